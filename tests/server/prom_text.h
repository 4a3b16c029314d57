// A strict parser of the Prometheus text format for tests: every sample line must be
// `name{label="value",...} number`, every family needs # HELP and # TYPE before its
// samples, and label values are unescaped. Anything else is a parse error.
#pragma once

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace adaptcache::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromText {
  std::vector<PromSample> samples;
  std::map<std::string, std::string> types;  // family -> counter/gauge/histogram
  std::map<std::string, std::string> helps;

  // Sum of the samples named `name` whose labels include all of `match`.
  double Sum(const std::string& name, const std::map<std::string, std::string>& match = {}) const {
    double total = 0;
    for (const auto& s : samples) {
      if (s.name != name) continue;
      bool ok = true;
      for (const auto& [k, v] : match) {
        auto it = s.labels.find(k);
        ok &= it != s.labels.end() && it->second == v;
      }
      if (ok) total += s.value;
    }
    return total;
  }
  bool Has(const std::string& name) const {
    for (const auto& s : samples) {
      if (s.name == name) return true;
    }
    return false;
  }
};

// Returns "" on success, else the first error with its line.
inline std::string ParsePromText(const std::string& text, PromText* out) {
  size_t pos = 0;
  int line_no = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) return "text does not end with a newline";
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    auto err = [&](const std::string& why) {
      return "line " + std::to_string(line_no) + ": " + why + ": " + line;
    };
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0) {
      size_t sp = line.find(' ', 7);
      if (sp == std::string::npos) return err("HELP without text");
      out->helps[line.substr(7, sp - 7)] = line.substr(sp + 1);
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      size_t sp = line.find(' ', 7);
      if (sp == std::string::npos) return err("TYPE without type");
      std::string type = line.substr(sp + 1);
      if (type != "counter" && type != "gauge" && type != "histogram") return err("bad type");
      out->types[line.substr(7, sp - 7)] = type;
      continue;
    }
    if (line[0] == '#') return err("unknown comment");
    PromSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = line.substr(0, i);
    if (s.name.empty()) return err("empty name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        size_t eq = line.find('=', i);
        if (eq == std::string::npos || eq + 1 >= line.size() || line[eq + 1] != '"') {
          return err("bad label");
        }
        std::string key = line.substr(i, eq - i);
        std::string value;
        i = eq + 2;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\') {
            if (i + 1 >= line.size()) return err("dangling escape");
            char c = line[i + 1];
            if (c == 'n') {
              value += '\n';
            } else if (c == '\\' || c == '"') {
              value += c;
            } else {
              return err("bad escape");
            }
            i += 2;
          } else {
            value += line[i++];
          }
        }
        if (i >= line.size()) return err("unterminated label value");
        ++i;
        if (s.labels.count(key)) return err("duplicate label");
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
    }
    if (i >= line.size() || line[i] != ' ') return err("no value");
    std::string v = line.substr(i + 1);
    if (v == "+Inf") {
      s.value = 1.0 / 0.0;
    } else if (v == "-Inf") {
      s.value = -1.0 / 0.0;
    } else if (v == "NaN") {
      s.value = 0.0 / 0.0;
    } else {
      char* endp = nullptr;
      s.value = std::strtod(v.c_str(), &endp);
      if (endp == v.c_str() || *endp != '\0') return err("bad value");
    }
    // The family is the name, or the name minus a histogram suffix.
    std::string family = s.name;
    for (const char* suf : {"_bucket", "_sum", "_count"}) {
      std::string sf(suf);
      if (family.size() > sf.size() && family.compare(family.size() - sf.size(), sf.size(), sf) == 0 &&
          out->types.count(family.substr(0, family.size() - sf.size())) &&
          out->types[family.substr(0, family.size() - sf.size())] == "histogram") {
        family = family.substr(0, family.size() - sf.size());
      }
    }
    if (!out->types.count(family) || !out->helps.count(family)) return err("sample before TYPE/HELP");
    out->samples.push_back(std::move(s));
  }
  return "";
}

}  // namespace adaptcache::testing
