#pragma once
// The trainer's status output. On a terminal the progress line ("epoch 1/5 [ 100/469] loss ...")
// is redrawn in place: '\r', the new text, then "erase to the end of the line", so a run shows one
// live line instead of a scrolling wall; lines that must stay (end of epoch, warnings) start on a
// fresh line below it. Into a file or a pipe every update is its own line, as logs and
// `tee` expect.
#include <cstdio>
#include <string>

namespace nextvit {

class ProgressLine {
 public:
  // terminal: redraw in place (for stdout, isatty decides: see for_stdout()).
  // width: the terminal's columns (0: unknown); a longer progress line is cut to fit, since a
  // wrapped line cannot be redrawn with '\r'.
  ProgressLine(std::FILE* out, bool terminal, int width = 0)
      : out_(out), terminal_(terminal), width_(width) {}
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;
  ~ProgressLine() { finish(); }

  static ProgressLine for_stdout();

  // A progress update: replaces the previous one on a terminal.
  void progress(const std::string& text);
  // A line that stays.
  void line(const std::string& text);
  // Ends a progress line left open on a terminal (so that what follows starts below it).
  void finish();

 private:
  std::FILE* out_;
  bool terminal_;
  int width_;
  bool open_ = false;  // a progress line is on screen without its newline
};

}  // namespace nextvit
