#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>

namespace ktrail {
namespace {

// Per thread: opens run on the JS thread of their environment, so worker threads that open
// captures at the same time never see each other's messages.
thread_local std::string* active_capture = nullptr;

int Print(enum libbpf_print_level level, const char* format, va_list args) {
  if (active_capture == nullptr) {
    // Outside an open/attach, only warnings matter; they go to stderr like libbpf's default.
    if (level == LIBBPF_WARN) return vfprintf(stderr, format, args);
    return 0;
  }
  if (level == LIBBPF_DEBUG) return 0;  // debug output is large and says nothing about failures
  char stack_buf[1024];
  va_list copy;
  va_copy(copy, args);
  int n = vsnprintf(stack_buf, sizeof(stack_buf), format, copy);
  va_end(copy);
  if (n < 0) return n;
  if (static_cast<size_t>(n) < sizeof(stack_buf)) {
    active_capture->append(stack_buf, n);
  } else {  // verifier logs are long: format again into a buffer of the right size
    std::string big(static_cast<size_t>(n) + 1, '\0');
    vsnprintf(big.data(), big.size(), format, args);
    big.resize(n);
    active_capture->append(big);
  }
  // Keep memory bounded if something prints endlessly: only the tail is ever reported.
  if (active_capture->size() > (4u << 20)) active_capture->erase(0, active_capture->size() - (1u << 20));
  return n;
}

}  // namespace

void InstallLibbpfLogger() { libbpf_set_print(Print); }

LibbpfLogCapture::LibbpfLogCapture() : previous_(active_capture) { active_capture = &text_; }
LibbpfLogCapture::~LibbpfLogCapture() { active_capture = previous_; }

std::string LibbpfLogCapture::Take() {
  std::string out;
  out.swap(text_);
  return out;
}

std::string Tail(const std::string& text, size_t max_lines, size_t max_chars) {
  size_t end = text.find_last_not_of("\n ");
  if (end == std::string::npos) return "";
  size_t start = 0;
  size_t lines = 0;
  for (size_t i = end + 1; i > 0; i--) {
    if (text[i - 1] == '\n' && ++lines == max_lines) {
      start = i;
      break;
    }
  }
  if (end + 1 - start > max_chars) start = end + 1 - max_chars;
  return text.substr(start, end + 1 - start);
}

}  // namespace ktrail
