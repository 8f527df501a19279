// libbpf reports verifier logs and errors only through its print callback (one per process).
// A LibbpfLogCapture collects what libbpf prints on the current thread while it is alive, so
// a failing program can be reported with the verifier's own words.
#pragma once
#include <string>

namespace ktrail {

void InstallLibbpfLogger();

class LibbpfLogCapture {
 public:
  LibbpfLogCapture();
  ~LibbpfLogCapture();
  LibbpfLogCapture(const LibbpfLogCapture&) = delete;
  LibbpfLogCapture& operator=(const LibbpfLogCapture&) = delete;
  // Returns what was captured so far and clears it.
  std::string Take();

 private:
  std::string text_;
  std::string* previous_;
};

// The last `max_lines` lines (and at most `max_chars` characters) of `text`.
std::string Tail(const std::string& text, size_t max_lines = 25, size_t max_chars = 3000);

}  // namespace ktrail
