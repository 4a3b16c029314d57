// The command line: one flag per setting (CLI11), layered over --config FILE.
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "absl/strings/str_cat.h"
#include "common/key.h"
#include "server/config.h"
#include "server/config_internal.h"

namespace adaptcache::server {

absl::StatusOr<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine result;
  CLI::App app{"adaptcached: the AdaptCache KV-cache storage daemon.\n"
               "Settings come from embedded defaults, then --config FILE (TOML), then flags."};
  app.set_version_flag("--version", "adaptcached 0.1.0");
  std::string config_path;
  app.add_option("--config", config_path, "TOML config file (see deploy/adaptcached.toml)");
  app.add_flag("--print-config", result.print_config,
               "Print the effective configuration as TOML and exit");
  const ServerConfig defaults;
  std::vector<std::string> values(AllSettings().size());
  std::vector<CLI::Option*> options;
  for (size_t i = 0; i < AllSettings().size(); ++i) {
    const Setting& s = AllSettings()[i];
    std::string type = s.kind == SettingKind::kBool   ? "BOOL"
                       : s.kind == SettingKind::kUint ? "UINT"
                       : s.kind == SettingKind::kBytes ? "SIZE"
                                                       : "TEXT";
    options.push_back(app.add_option("--" + s.flag, values[i],
                                     absl::StrCat(s.help, " [", s.section, "] ", s.key,
                                                  " (default: ", TomlLiteral(s, defaults), ")"))
                          ->type_name(type));
    if (s.kind == SettingKind::kBool) options.back()->expected(0, 1);  // a bare --flag is true
  }
  std::vector<std::string> ns_codecs;
  app.add_option("--namespace-codec", ns_codecs,
                 "Per-namespace codec NAMESPACE=CODEC (repeatable); like [namespaces.\"NS\"]")
      ->type_name("NS=CODEC");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    int code = app.exit(e, out, err);
    if (code != 0) {
      return absl::InvalidArgumentError(absl::StrCat(err.str(), out.str()));
    }
    std::cout << out.str();
    result.exit_now = true;
    result.exit_code = 0;
    return result;
  }
  ServerConfig cfg;
  if (!config_path.empty()) {
    if (auto st = ApplyTomlFile(config_path, cfg); !st.ok()) return st;
  }
  for (size_t i = 0; i < options.size(); ++i) {
    if (options[i]->count() == 0) continue;
    const bool bare = AllSettings()[i].kind == SettingKind::kBool && values[i].empty();
    if (auto st = AllSettings()[i].set(cfg, bare ? "true" : values[i]); !st.ok()) return st;
  }
  for (const auto& nc : ns_codecs) {
    size_t eq = nc.rfind('=');
    if (eq == std::string::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--namespace-codec '", nc, "': expected NAMESPACE=CODEC"));
    }
    std::string ns = nc.substr(0, eq);
    std::string codec = nc.substr(eq + 1);
    if (auto st = ValidateNamespace(ns); !st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--namespace-codec '", nc, "': ", std::string(st.message())));
    }
    if (auto st = CheckCodec(codec); !st.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--namespace-codec '", nc, "': ", std::string(st.message())));
    }
    cfg.namespaces[ns].codec = codec;
  }
  if (auto st = Validate(cfg); !st.ok()) return st;
  result.config = std::move(cfg);
  return result;
}

}  // namespace adaptcache::server
