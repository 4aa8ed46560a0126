#include "train/progress_line.h"

#include <sys/ioctl.h>
#include <unistd.h>

namespace nextvit {

ProgressLine ProgressLine::for_stdout() {
  const bool terminal = isatty(STDOUT_FILENO) == 1;
  winsize size{};
  const int width = terminal && ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 ? size.ws_col : 0;
  return ProgressLine(stdout, terminal, width);
}

void ProgressLine::progress(const std::string& text) {
  if (!terminal_) return line(text);
  std::string shown = text;
  if (width_ > 1 && shown.size() >= size_t(width_)) shown.resize(size_t(width_) - 1);
  std::fprintf(out_, "\r%s\033[K", shown.c_str());  // ESC[K: erase the rest of the old line
  std::fflush(out_);
  open_ = true;
}

void ProgressLine::line(const std::string& text) {
  finish();
  std::fprintf(out_, "%s\n", text.c_str());
  std::fflush(out_);
}

void ProgressLine::finish() {
  if (!open_) return;
  std::fputc('\n', out_);
  std::fflush(out_);
  open_ = false;
}

}  // namespace nextvit
