// Using a trained model (issue 12): self-describing weights (models/model_metadata.h,
// models/saved_model.h), the persisted deploy form, predict on image files (train/predict.h) and
// fine-tuning from saved weights (train/init_weights.h).
#include <filesystem>
#include <fstream>

#include "core/args.h"
#include "core/safetensors.h"
#include "models/deploy.h"
#include "models/saved_model.h"
#include "test_util.h"
#include "train/data/fashion_mnist.h"
#include "train/data/gzip.h"
#include "train/data/image_folder.h"
#include "train/data/preprocess.h"
#include "train/init_weights.h"
#include "train/predict.h"
#include "train/trainer.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

using namespace nextvit;
namespace fs = std::filesystem;

namespace {

// A reduced model whose pooling windows fit 32x32 inputs.
NextViTConfig small_config(int64_t classes) {
  NextViTConfig c = test::reduced_config("use_test", 3, classes);
  c.sr_ratios = {4, 2, 2, 1};
  c.drop_path = 0.0f;
  return c;
}

// Non-trivial BatchNorm statistics and affine parameters, so that folding has work to do.
void randomise_batch_norms(NextViT& model, uint64_t seed) {
  Generator g(seed);
  for (auto& [name, v] : model.named_parameters()) {
    if (name.find("norm") != std::string::npos)
      v.data().copy_(test::random_tensor(v.shape(), g, 0.5f, 1.5f));
  }
  for (auto& [name, t] : model.named_buffers()) {
    if (name.find("running_mean") != std::string::npos)
      t->copy_(test::random_tensor(t->shape(), g, -0.5f, 0.5f));
    if (name.find("running_var") != std::string::npos)
      t->copy_(test::random_tensor(t->shape(), g, 0.5f, 2.0f));
  }
}

Tensor eval_logits(NextViT& model, const Tensor& x) {
  NoGradGuard no_grad;
  return model.forward(Variable(x)).data();
}

// max |a - b| / max |b|: the error relative to the logits' scale.
double relative_error(const Tensor& a, const Tensor& b) {
  std::vector<float> x = a.to_vector(), y = b.to_vector();
  double err = 0;
  for (size_t i = 0; i < x.size(); ++i) err = std::max(err, std::fabs(double(x[i]) - y[i]));
  return err / test::max_abs(b);
}

ModelMetadata full_metadata(const NextViTConfig& c) {
  ModelMetadata m;
  m.config = c;
  m.preprocess = data::fashion_mnist_preprocess(32);
  for (int64_t i = 0; i < c.num_classes; ++i) m.classes.push_back("class_" + std::to_string(i));
  return m;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()),
             static_cast<std::streamsize>(bytes.size()));
}

void put_be32(std::vector<uint8_t>& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(uint8_t(v >> (8 * i)));
}

void put_chunk(std::vector<uint8_t>& png, const char* type, const std::vector<uint8_t>& body) {
  put_be32(png, static_cast<uint32_t>(body.size()));
  const size_t start = png.size();
  png.insert(png.end(), type, type + 4);
  png.insert(png.end(), body.begin(), body.end());
  put_be32(png, data::crc32(png.data() + start, png.size() - start));
}

// A 16-bit gray PNG (zlib with stored blocks: no compressor needed). Sample = v * 257, so the
// 8-bit value a decoder should give back is v.
std::vector<uint8_t> gray16_png(int h, int w, const std::vector<uint8_t>& v) {
  std::vector<uint8_t> raw;
  for (int y = 0; y < h; ++y) {
    raw.push_back(0);  // filter: none
    for (int x = 0; x < w; ++x) raw.insert(raw.end(), 2, v[size_t(y) * w + x]);
  }
  std::vector<uint8_t> z = {0x78, 0x01, 0x01};  // zlib header, one final stored block
  const uint16_t len = static_cast<uint16_t>(raw.size());
  z.insert(z.end(), {uint8_t(len), uint8_t(len >> 8), uint8_t(~len), uint8_t(~len >> 8)});
  z.insert(z.end(), raw.begin(), raw.end());
  uint32_t a = 1, b = 0;  // adler32
  for (uint8_t c : raw) a = (a + c) % 65521, b = (b + a) % 65521;
  put_be32(z, (b << 16) | a);
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 13, 10, 26, 10}, ihdr;
  put_be32(ihdr, w);
  put_be32(ihdr, h);
  ihdr.insert(ihdr.end(), {16, 0, 0, 0, 0});  // 16-bit gray
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", z);
  put_chunk(png, "IEND", {});
  return png;
}

// A PNG whose header claims 30000x30000 pixels (a few dozen bytes on disk).
std::vector<uint8_t> huge_png() {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 13, 10, 26, 10}, ihdr;
  put_be32(ihdr, 30000);
  put_be32(ihdr, 30000);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit RGB
  put_chunk(png, "IHDR", ihdr);
  put_chunk(png, "IDAT", {0x78, 0x01});
  return png;
}

}  // namespace

TEST_CASE("metadata: written and read back, malformed values refused by key", "[use]") {
  const ModelMetadata m = full_metadata(small_config(4));
  const auto entries = metadata_entries(m);
  REQUIRE(entries.at("nextvit.form") == "train");
  const ModelMetadata back = parse_metadata(entries, "f");
  REQUIRE(back.config->to_json() == m.config->to_json());
  REQUIRE(*back.preprocess == *m.preprocess);
  REQUIRE(back.classes == m.classes);
  REQUIRE(parse_metadata({}, "f").config == std::nullopt);  // a bare file: nothing known

  auto with = [&](const std::string& key, const std::string& value) {
    auto e = entries;
    e[key] = value;
    return e;
  };
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.form", "fp16"), "w.st"),
                      Catch::Contains("w.st") && Catch::Contains("nextvit.form"));
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.classes", "[\"a\", 3]"), "w.st"),
                      Catch::Contains("nextvit.classes"));
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.classes", "[\"a\"]"), "w.st"),
                      Catch::Contains("1 class names for a model of 4 classes"));
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.preprocess", "{\"size\": 3}"), "w.st"),
                      Catch::Contains("nextvit.preprocess") && Catch::Contains("missing"));
  nlohmann::json p = m.preprocess->to_json();
  p["resize"] = "stretch";
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.preprocess", p.dump()), "w.st"),
                      Catch::Contains("\"resize\""));
  REQUIRE_THROWS_WITH(parse_metadata(with("nextvit.config", "{\"head_dim\": 8"), "w.st"),
                      Catch::Contains("nextvit.config"));
}

TEST_CASE("saved model: a self-describing file needs no --model, a bare one does", "[use]") {
  test::TempDir dir;
  const NextViTConfig c = small_config(5);
  NextViT model(c, 3);
  model.eval();
  save_model(model, full_metadata(c), dir.file("own.safetensors"));
  save_weights(model, dir.file("bare.safetensors"));  // as older runs and official files
  Generator g(1);
  const Tensor x = test::random_tensor({2, 3, 32, 32}, g);
  const Tensor expected = eval_logits(model, x);

  SavedModel own = load_saved_model(dir.file("own.safetensors"));
  REQUIRE(own.metadata.classes.size() == 5);
  REQUIRE(own.metadata.preprocess->size == 32);
  NV_REQUIRE_CLOSE(eval_logits(*own.model, x), expected, 0.0, 0.0);

  REQUIRE_THROWS_WITH(load_saved_model(dir.file("bare.safetensors")),
                      Catch::Contains("give --model"));
  std::ofstream(dir.file("config.json")) << c.to_json().dump();
  // The class count comes from the bare file's classifier.
  SavedModel bare = load_saved_model(dir.file("bare.safetensors"), dir.file("config.json"));
  REQUIRE(bare.model->config().num_classes == 5);
  REQUIRE(bare.metadata.classes.empty());
  NV_REQUIRE_CLOSE(eval_logits(*bare.model, x), expected, 0.0, 0.0);
  REQUIRE_THROWS_WITH(load_saved_model(dir.file("own.safetensors"), "nextvit_small"),
                      Catch::Contains("drop --model"));
}

TEST_CASE("deploy: the exported folded network gives the unfolded logits within 1e-5", "[use]") {
  test::TempDir dir;
  const NextViTConfig c = small_config(7);
  NextViT model(c, 9);
  randomise_batch_norms(model, 4);
  model.eval();
  save_model(model, full_metadata(c), dir.file("train.safetensors"));

  SavedModel saved = load_saved_model(dir.file("train.safetensors"));
  fold_batch_norms(*saved.model);
  saved.metadata.form = ModelForm::Deploy;
  save_model(*saved.model, saved.metadata, dir.file("deploy.safetensors"));

  const SafeTensors file = read_safetensors(dir.file("deploy.safetensors"));
  REQUIRE(file.metadata.at("nextvit.form") == "deploy");
  for (const auto& name : file.names()) REQUIRE(name.find("running_mean") == std::string::npos);
  REQUIRE(file.contains("stem.0.conv.bias"));  // the folded BatchNorm's shift

  SavedModel deploy = load_saved_model(dir.file("deploy.safetensors"));
  REQUIRE(deploy.metadata.form == ModelForm::Deploy);
  REQUIRE(deploy.metadata.classes == saved.metadata.classes);
  Generator g(2);
  const Tensor x = test::random_tensor({3, 3, 32, 32}, g);
  const Tensor unfolded = eval_logits(model, x), folded = eval_logits(*deploy.model, x);
  const double err = relative_error(folded, unfolded);
  INFO("relative error " << err);
  REQUIRE(err <= 1e-5);
  REQUIRE_THROWS_WITH(read_init_weights(dir.file("deploy.safetensors")),
                      Catch::Contains("deploy-form file"));
}

TEST_CASE("predict: image files of every kind give the logits of the eval transform", "[use]") {
  test::TempDir dir;
  const NextViTConfig c = small_config(4);
  NextViT model(c, 5);
  randomise_batch_norms(model, 6);
  model.eval();
  const Preprocess pre = data::fashion_mnist_preprocess(32);

  // Images: gray, RGB and RGBA PNG, BMP, JPEG, 16-bit gray PNG; then a file that is not an
  // image, one that does not exist and a PNG that claims 30000x30000 pixels.
  Generator g(8);
  std::vector<data::Image> images;
  for (int channels : {1, 3, 4, 3, 3, 1}) {
    data::Image img(20 + channels, 28, channels);
    for (auto& p : img.pixels) p = static_cast<uint8_t>(g.next_u64() % 256);
    images.push_back(img);
  }
  const auto& im = images;
  stbi_write_png(dir.file("a_gray.png").c_str(), im[0].width, im[0].height, 1, im[0].pixels.data(),
                 0);
  stbi_write_png(dir.file("b_rgb.png").c_str(), im[1].width, im[1].height, 3, im[1].pixels.data(),
                 0);
  stbi_write_png(dir.file("c_rgba.png").c_str(), im[2].width, im[2].height, 4, im[2].pixels.data(),
                 0);
  stbi_write_bmp(dir.file("d.bmp").c_str(), im[3].width, im[3].height, 3, im[3].pixels.data());
  stbi_write_jpg(dir.file("e.jpg").c_str(), im[4].width, im[4].height, 3, im[4].pixels.data(), 95);
  write_bytes(dir.file("f_gray16.png"), gray16_png(im[5].height, im[5].width, im[5].pixels));
  write_bytes(dir.file("g_huge.png"), huge_png());
  write_bytes(dir.file("h_not_an_image.png"), {'h', 'e', 'l', 'l', 'o'});

  std::vector<std::string> paths = list_images({dir.path.string()});
  REQUIRE(paths.size() == 8);
  paths.push_back(dir.file("missing.png"));
  PredictOptions o;
  o.batch = 4;  // several batches, one with failures only partly
  o.top_k = 3;
  std::vector<Prediction> got;
  const int64_t failed =
      predict_images(model, pre, paths, o, [&](const Prediction& p) { got.push_back(p); });
  REQUIRE(failed == 3);
  REQUIRE(got.size() == 9);
  REQUIRE_THAT(got[6].error, Catch::Contains("900000000 pixels"));
  REQUIRE_FALSE(got[7].error.empty());
  REQUIRE_FALSE(got[8].error.empty());
  REQUIRE(got[8].path == dir.file("missing.png"));

  // Expected: the decoded pixels (lossless formats: the pixels written; RGBA loses alpha over
  // black as libpng does; the JPEG is decoded as the loaders decode it) through the pipeline.
  const data::Pipeline pipeline = data::eval_pipeline(pre);
  Tensor x = Tensor::empty({6, 3, 32, 32});
  for (int i = 0; i < 6; ++i) {
    data::Image rgb;
    std::string reason;
    REQUIRE(data::decode_image_file(paths[i], rgb, reason));
    if (i != 2 && i != 4) {  // lossless, no alpha: exactly the pixels written, made RGB
      const data::Image expected = data::gray_to_rgb(im[i]);
      REQUIRE(rgb.pixels == expected.pixels);
    }
    Generator unused;
    pipeline.augment(rgb, unused);
    pipeline.to_chw(rgb, x.data<float>() + i * 3 * 32 * 32);
  }
  const std::vector<float> want = eval_logits(model, x).to_vector();
  for (int i = 0; i < 6; ++i) {
    INFO(paths[i]);
    REQUIRE(got[i].error.empty());
    REQUIRE(got[i].top.size() == 3);
    for (int k = 0; k < 4; ++k) REQUIRE(got[i].logits[k] == Approx(want[i * 4 + k]).margin(1e-5));
    REQUIRE(got[i].top[0].probability >= got[i].top[1].probability);
    int64_t best = 0;
    for (int k = 1; k < 4; ++k) best = want[i * 4 + k] > want[i * 4 + best] ? k : best;
    REQUIRE(got[i].top[0].label == best);
  }
}

TEST_CASE("fine-tune: a Fashion-MNIST model continues on a 2-class image folder", "[use]") {
  if (!data::FashionMnist::available(data::Split::Train) ||
      !data::FashionMnist::available(data::Split::Test)) {
    WARN("skipped: Fashion-MNIST not found (apt-get install dataset-fashion-mnist)");
    return;
  }
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << small_config(10).to_json().dump();
  TrainOptions base;
  base.model = dir.file("config.json");
  base.out = dir.file("fmnist");
  base.img = 32;
  base.epochs = 1;
  base.batch = 16;
  base.limit_train = 32;
  base.limit_eval = 16;
  base.workers = 0;
  base.quiet = true;
  train(base);
  const std::string pretrained = dir.file("fmnist/model.safetensors");
  const SavedModel first = load_saved_model(pretrained);
  REQUIRE(first.metadata.classes.size() == 10);
  REQUIRE(first.metadata.classes[9] == "Ankle boot");
  REQUIRE(first.metadata.preprocess->resize == "exact");
  REQUIRE(first.metadata.preprocess->size == 32);

  // Two classes of Fashion-MNIST test images as PNG files: trousers (1) and bags (8).
  data::FashionMnist test_set(data::Split::Test);
  int written = 0;
  for (int64_t i = 0; i < test_set.size() && written < 12; ++i) {
    data::Image img;
    const int64_t label = test_set.get(i, img);
    if (label != 1 && label != 8) continue;
    const std::string split = written % 3 == 0 ? "val" : "train";
    const fs::path folder = dir.path / "folder" / split / (label == 1 ? "trouser" : "bag");
    fs::create_directories(folder);
    stbi_write_png((folder / (std::to_string(i) + ".png")).string().c_str(), img.width, img.height,
                   1, img.pixels.data(), 0);
    ++written;
  }

  TrainOptions tune = base;
  tune.model = TrainOptions().model;  // the architecture comes from --init
  tune.init = pretrained;
  tune.data = dir.file("folder");
  tune.out = dir.file("tuned");
  tune.batch = 4;
  tune.limit_train = 0;
  tune.limit_eval = 0;
  tune.lr = 1e-4;
  tune.warmup_epochs = 0;
  train(tune);
  const SavedModel tuned = load_saved_model(dir.file("tuned/model.safetensors"));
  REQUIRE(tuned.metadata.classes == std::vector<std::string>{"bag", "trouser"});
  REQUIRE(tuned.metadata.preprocess->resize == "center");
  REQUIRE(tuned.model->config().num_classes == 2);
  REQUIRE(same_architecture(tuned.model->config(), first.model->config()));

  // A few small steps from the pretrained weights stay near them, far from a fresh start.
  auto weight = [](const NextViT& m) { return (*m.stem)[0].conv->weight().data(); };
  const NextViT fresh(tuned.model->config(), 12345);  // another initialisation
  const double moved = relative_error(weight(*tuned.model), weight(*first.model));
  const double from_fresh = relative_error(weight(*tuned.model), weight(fresh));
  INFO("moved " << moved << ", distance from a fresh initialisation " << from_fresh);
  REQUIRE(moved < 0.05);
  REQUIRE(from_fresh > 10 * moved);

  // The classifier of another class count is re-initialised, with a message; an architecture
  // other than the file's is refused.
  NextViT two(tuned.model->config());
  const std::string note = apply_init_weights(two, read_init_weights(pretrained));
  REQUIRE_THAT(note, Catch::Contains("10 classes") && Catch::Contains("initialised afresh"));
  NextViTConfig other = small_config(2);
  other.head_dim = 32;
  REQUIRE_THROWS_WITH(init_config(read_init_weights(pretrained), other, true, false),
                      Catch::Contains("drop --model"));
}

TEST_CASE("predict: image paths are taken from around the options", "[use][cli]") {
  std::vector<std::string> inputs;
  int64_t k = 5;
  cli::Options o("nextvit predict", "");
  o.positional("IMAGE|DIR", &inputs, "images").integer("top-k", &k, "K", 1, 10, "classes");
  std::vector<std::string> args{"nextvit", "predict", "a.png", "--top-k", "2", "dir"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  REQUIRE(o.parse(static_cast<int>(argv.size()), argv.data(), 2));
  REQUIRE(inputs == std::vector<std::string>{"a.png", "dir"});
  REQUIRE(k == 2);
  REQUIRE_THAT(o.help(), Catch::Contains("[options] IMAGE|DIR...") && Catch::Contains("images"));

  std::vector<std::string> none{"nextvit", "predict", "--top-k", "2"};
  std::vector<char*> none_argv;
  for (std::string& a : none) none_argv.push_back(a.data());
  std::vector<std::string> empty;
  cli::Options p("nextvit predict", "");
  p.positional("IMAGE|DIR", &empty, "images").integer("top-k", &k, "K", 1, 10, "classes");
  REQUIRE_THROWS_WITH(p.parse(4, none_argv.data(), 2), Catch::Contains("name at least one IMAGE"));
  // Without a positional declaration a bare word stays an error.
  cli::Options q("nextvit forward", "");
  REQUIRE_THROWS_WITH(q.parse(static_cast<int>(argv.size()), argv.data(), 2),
                      Catch::Contains("unexpected argument 'a.png'"));
}
