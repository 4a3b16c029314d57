// The TOML layer: ApplyToml() over the settings table, and ToToml() for --print-config.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cctype>
#include <cstdio>
#include <string>

#include <toml++/toml.h>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_format.h"
#include "common/key.h"
#include "server/config.h"
#include "server/config_internal.h"

namespace adaptcache::server {

std::string TomlQuote(std::string_view v) {
  std::string out = "\"";
  for (char ch : v) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", ch);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

std::string TomlLiteral(const Setting& s, const ServerConfig& c) {
  std::string v = s.get(c);
  switch (s.kind) {
    case SettingKind::kBool:
    case SettingKind::kUint:
      return v;
    case SettingKind::kBytes:
      return std::all_of(v.begin(), v.end(), ::isdigit) ? v : TomlQuote(v);
    case SettingKind::kString:
      return TomlQuote(v);
  }
  return v;
}

namespace {

std::string Where(const toml::node& n, std::string_view origin) {
  const auto& src = n.source();
  return absl::StrCat(std::string(origin), ":", src.begin.line, ": ");
}

// The TOML value as the text a setter parses; type mismatches are errors.
absl::StatusOr<std::string> NodeText(const Setting& s, const toml::node& n) {
  switch (s.kind) {
    case SettingKind::kBool:
      if (auto* b = n.as_boolean()) return std::string(b->get() ? "true" : "false");
      return absl::InvalidArgumentError("must be a boolean");
    case SettingKind::kUint:
      if (auto* i = n.as_integer()) {
        if (i->get() < 0) return absl::InvalidArgumentError("must not be negative");
        return std::to_string(i->get());
      }
      return absl::InvalidArgumentError("must be an integer");
    case SettingKind::kBytes:
      if (auto* i = n.as_integer()) {
        if (i->get() < 0) return absl::InvalidArgumentError("must not be negative");
        return std::to_string(i->get());
      }
      if (auto* str = n.as_string()) return str->get();
      return absl::InvalidArgumentError("must be an integer or a size string like \"64MiB\"");
    case SettingKind::kString:
      if (auto* str = n.as_string()) return str->get();
      return absl::InvalidArgumentError("must be a string");
  }
  return absl::InternalError("unknown setting kind");
}

}  // namespace

absl::Status ApplyToml(std::string_view toml_text, std::string_view origin, ServerConfig& cfg) {
  toml::table doc;
  try {
    doc = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(absl::StrCat(std::string(origin), ":",
                                                   e.source().begin.line, ": ",
                                                   std::string(e.description())));
  }
  ServerConfig next = cfg;
  for (auto&& [section_key, section_node] : doc) {
    const std::string section(section_key.str());
    auto* table = section_node.as_table();
    if (table == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(Where(section_node, origin), "'", section,
                                                     "' must be a table like [", section, "]"));
    }
    if (section == "namespaces") {
      for (auto&& [ns_key, ns_node] : *table) {
        const std::string ns(ns_key.str());
        if (auto st = ValidateNamespace(ns); !st.ok()) {
          return absl::InvalidArgumentError(absl::StrCat(Where(ns_node, origin), "namespace '", ns,
                                                         "': ", std::string(st.message())));
        }
        auto* ns_table = ns_node.as_table();
        if (ns_table == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              Where(ns_node, origin), "namespaces.\"", ns, "\" must be a table"));
        }
        NamespaceSettings settings;
        for (auto&& [k, v] : *ns_table) {
          const std::string key(k.str());
          if (key == "codec") {
            auto* str = v.as_string();
            if (str == nullptr) {
              return absl::InvalidArgumentError(
                  absl::StrCat(Where(v, origin), "namespaces.\"", ns, "\".codec must be a string"));
            }
            if (auto st = CheckCodec(str->get()); !st.ok()) {
              return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "namespaces.\"", ns,
                                                             "\".codec: ", std::string(st.message())));
            }
            settings.codec = str->get();
          } else if (key == "alpha" || key == "max_loss" || key == "avg_loss") {
            // A number, or "inf" for max_loss.
            std::string text;
            if (auto* str = v.as_string()) {
              text = str->get();
            } else if (auto d = v.value<double>()) {
              text = absl::StrCat(*d);  // 6 significant digits: keep them only if exact
              double back = 0;
              if (!absl::SimpleAtod(text, &back) || back != *d) text = absl::StrFormat("%.17g", *d);
            } else {
              return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "namespaces.\"", ns, "\".",
                                                             key, " must be a number"));
            }
            if (auto st = CheckNamespaceBudget(key, text); !st.ok()) {
              return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "namespaces.\"", ns, "\".",
                                                             key, ": ", std::string(st.message())));
            }
            (key == "alpha" ? settings.alpha : key == "max_loss" ? settings.max_loss : settings.avg_loss) = text;
          } else {
            return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "unknown key '", key,
                                                           "' in namespaces.\"", ns,
                                                           "\" (known: codec, alpha, max_loss, avg_loss)"));
          }
        }
        next.namespaces[ns] = settings;
      }
      continue;
    }
    bool known_section = false;
    for (const auto& s : AllSettings()) known_section |= s.section == section;
    if (!known_section) {
      std::vector<std::string> known;
      for (const auto& s : AllSettings()) {
        if (std::find(known.begin(), known.end(), s.section) == known.end()) known.push_back(s.section);
      }
      known.push_back("namespaces");
      return absl::InvalidArgumentError(absl::StrCat(Where(section_node, origin), "unknown section [",
                                                     section, "] (known: ", absl::StrJoin(known, ", "), ")"));
    }
    for (auto&& [k, v] : *table) {
      const std::string key(k.str());
      const Setting* setting = nullptr;
      for (const auto& s : AllSettings()) {
        if (s.section == section && s.key == key) setting = &s;
      }
      if (setting == nullptr) {
        std::string known;
        for (const auto& s : AllSettings()) {
          if (s.section == section) absl::StrAppend(&known, known.empty() ? "" : ", ", s.key);
        }
        return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "unknown key '", key,
                                                       "' in [", section, "] (known: ", known,
                                                       ")"));
      }
      auto text = NodeText(*setting, v);
      if (!text.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(Where(v, origin), "[", section, "] ", key,
                                                       " ", std::string(text.status().message())));
      }
      if (auto st = setting->set(next, *text); !st.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(v, origin), std::string(st.message())));
      }
    }
  }
  cfg = std::move(next);
  return absl::OkStatus();
}

absl::Status ApplyTomlFile(const std::string& path, ServerConfig& cfg) {
  // A directory opens fine as an ifstream and reads as empty, which would silently mean
  // "all defaults": check the file type first, and keep errno's meaning (ENOENT is
  // NOT_FOUND, EACCES is PERMISSION_DENIED).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat("cannot read config file ", path));
  struct stat st {};
  const int rc = ::fstat(fd, &st);
  const int err = errno;
  if (rc != 0) {
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("cannot stat config file ", path));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, " is a directory; --config takes a TOML file"));
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int rerr = errno;
      ::close(fd);
      return absl::ErrnoToStatus(rerr, absl::StrCat("cannot read config file ", path));
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return ApplyToml(text, path, cfg);
}

std::string ToToml(const ServerConfig& cfg) {
  std::string out = "# adaptcached effective configuration\n";
  std::string section;
  for (const auto& s : AllSettings()) {
    if (s.section != section) {
      section = s.section;
      absl::StrAppend(&out, "\n[", section, "]\n");
    }
    absl::StrAppend(&out, s.key, " = ", TomlLiteral(s, cfg), "  # ", s.help, "\n");
  }
  for (const auto& [ns, settings] : cfg.namespaces) {
    absl::StrAppend(&out, "\n[namespaces.", TomlQuote(ns), "]\n");
    if (!settings.codec.empty()) absl::StrAppend(&out, "codec = ", TomlQuote(settings.codec), "\n");
    if (!settings.alpha.empty()) absl::StrAppend(&out, "alpha = ", TomlQuote(settings.alpha), "\n");
    if (!settings.max_loss.empty()) absl::StrAppend(&out, "max_loss = ", TomlQuote(settings.max_loss), "\n");
    if (!settings.avg_loss.empty()) absl::StrAppend(&out, "avg_loss = ", TomlQuote(settings.avg_loss), "\n");
  }
  return out;
}

}  // namespace adaptcache::server
