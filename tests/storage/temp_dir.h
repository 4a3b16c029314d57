// A fresh temporary directory, removed with its contents on destruction.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace adaptcache::testing {

class TempDir {
 public:
  // `tmpl` ends in XXXXXX (mkdtemp). The default is under /var/tmp: O_DIRECT needs a
  // real filesystem, not tmpfs.
  explicit TempDir(std::string tmpl = "/var/tmp/ac_ssd_test_XXXXXX") {
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace adaptcache::testing
