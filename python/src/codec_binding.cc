// pybind11 binding of the codec library (kernels/codec.h, kernels/quality_proxy.h) on
// numpy arrays: the quality profiler (bench/quality/) uses exactly the daemon's codecs
// through it. KV tensors are C-ordered [2][layers][tokens][kv_heads][head_dim] arrays of
// float16 or float32; bf16 travels as uint16 with dtype="bf16". Errors from the library
// (absl::Status) become ValueError; nothing here throws across the C++ library boundary.
// Thread safety: every function releases no shared state; QualityReference objects are
// immutable after construction (they keep a copy of the tensor they borrow from).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "common/kv_shape.h"
#include "kernels/codec.h"
#include "kernels/container.h"
#include "kernels/quality_proxy.h"

namespace py = pybind11;

namespace adaptcache {
namespace {

[[noreturn]] void Raise(const absl::Status& st) {
  throw py::value_error(std::string(st.message()));
}

CodecConfig ParseOrRaise(const std::string& name) {
  auto cfg = ParseCodecConfig(name);
  if (!cfg.ok()) Raise(cfg.status());
  return *cfg;
}

// A validated, contiguous copy of a KV array plus its shape.
struct KvArray {
  KvShape shape;
  std::vector<std::byte> bytes;
  ConstByteSpan span() const { return bytes; }
};

KvArray ToKv(const py::array& arr, const std::string& dtype_override) {
  KvArray kv;
  if (arr.ndim() != 5 || arr.shape(0) != 2) {
    throw py::value_error("kv must have shape [2, layers, tokens, kv_heads, head_dim]");
  }
  const py::dtype dt = arr.dtype();
  if (dtype_override == "bf16") {
    if (!dt.is(py::dtype::of<uint16_t>())) throw py::value_error("bf16 kv must be a uint16 array");
    kv.shape.dtype = DType::kBF16;
  } else if (!dtype_override.empty()) {
    throw py::value_error("dtype must be empty or 'bf16'");
  } else if (dt.is(py::dtype("float16"))) {
    kv.shape.dtype = DType::kFP16;
  } else if (dt.is(py::dtype::of<float>())) {
    kv.shape.dtype = DType::kFP32;
  } else {
    throw py::value_error("kv dtype must be float16 or float32 (or uint16 with dtype='bf16')");
  }
  kv.shape.layers = static_cast<uint32_t>(arr.shape(1));
  kv.shape.tokens = static_cast<uint32_t>(arr.shape(2));
  kv.shape.kv_heads = static_cast<uint32_t>(arr.shape(3));
  kv.shape.head_dim = static_cast<uint32_t>(arr.shape(4));
  for (int i = 1; i < 5; ++i) {
    if (arr.shape(i) <= 0 || arr.shape(i) > (1 << 30)) throw py::value_error("bad kv dimension");
  }
  if (auto st = ValidateShape(kv.shape); !st.ok()) Raise(st);
  // Contiguous C-order copy, whatever the input strides.
  py::array c = py::array::ensure(arr, py::array::c_style | py::array::forcecast);
  if (!c) throw py::value_error("kv is not convertible to a contiguous array");
  if (static_cast<uint64_t>(c.nbytes()) != kv.shape.Bytes()) throw py::value_error("kv size mismatch");
  kv.bytes.resize(kv.shape.Bytes());
  std::memcpy(kv.bytes.data(), c.data(), kv.bytes.size());
  return kv;
}

std::vector<float> ToFloatVector(const py::object& obj, const char* what) {
  std::vector<float> out;
  if (obj.is_none()) return out;
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(obj);
  if (!a) throw py::value_error(std::string(what) + " must be a float array");
  out.assign(a.data(), a.data() + a.size());
  return out;
}

// Side data with owned storage (SideData only holds spans).
struct Side {
  std::vector<float> importance;
  std::vector<float> probes;
  uint32_t probe_count = 0;
  SideData View() const {
    SideData s;
    s.token_importance = importance;
    s.probe_count = probe_count;
    s.probe_queries = probes;
    return s;
  }
};

Side ToSide(const KvShape& shape, const py::object& importance, const py::object& probes) {
  Side s;
  s.importance = ToFloatVector(importance, "importance");
  if (!importance.is_none() && s.importance.size() != shape.tokens) {
    throw py::value_error("importance must have one value per token");
  }
  if (!probes.is_none()) {
    // [layers][probe_count][kv_heads][head_dim]
    auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(probes);
    if (!a || a.ndim() != 4 || a.shape(0) != shape.layers || a.shape(2) != shape.kv_heads ||
        a.shape(3) != shape.head_dim || a.shape(1) <= 0) {
      throw py::value_error("probes must have shape [layers, probe_count, kv_heads, head_dim]");
    }
    s.probe_count = static_cast<uint32_t>(a.shape(1));
    s.probes.assign(a.data(), a.data() + a.size());
  }
  return s;
}

py::array DecodeToArray(const py::bytes& blob) {
  const std::string_view b = blob;
  const ConstByteSpan in(reinterpret_cast<const std::byte*>(b.data()), b.size());
  auto view = ParseContainer(in);
  if (!view.ok()) Raise(view.status());
  const KvShape s = view->shape;
  std::vector<py::ssize_t> dims = {2, s.layers, s.tokens, s.kv_heads, s.head_dim};
  py::array out;
  switch (s.dtype) {
    case DType::kFP16: out = py::array(py::dtype("float16"), dims); break;
    case DType::kFP32: out = py::array(py::dtype::of<float>(), dims); break;
    case DType::kBF16: out = py::array(py::dtype::of<uint16_t>(), dims); break;
  }
  const ByteSpan dst(static_cast<std::byte*>(out.mutable_data()), s.Bytes());
  absl::Status st;
  {
    py::gil_scoped_release nogil;
    st = Decode(in, dst);
  }
  if (!st.ok()) Raise(st);
  return out;
}

py::dict ReportToDict(const QualityReport& r) {
  py::dict d;
  d["proxy"] = r.proxy;
  d["k_rel_error"] = r.k_rel_error;
  d["v_rel_error"] = r.v_rel_error;
  d["used_probes"] = r.used_probes;
  py::list layers;
  for (const LayerQuality& l : r.layers) {
    py::dict ld;
    ld["k_rel_error"] = l.k_rel_error;
    ld["v_rel_error"] = l.v_rel_error;
    ld["attention_error"] = l.attention_error;
    ld["attention_mass_lost"] = l.attention_mass_lost;
    ld["logit_rms_error"] = l.logit_rms_error;
    layers.append(ld);
  }
  d["layers"] = layers;
  return d;
}

// Owns the tensor and side data that QualityReference borrows.
class PyQualityReference {
 public:
  PyQualityReference(const py::array& kv, const py::object& importance, const py::object& probes,
                     const std::string& dtype)
      : kv_(std::make_unique<KvArray>(ToKv(kv, dtype))),
        side_(std::make_unique<Side>(ToSide(kv_->shape, importance, probes))) {
    absl::StatusOr<QualityReference> ref = absl::InternalError("unset");
    {
      py::gil_scoped_release nogil;
      ref = QualityReference::Build(kv_->shape, kv_->span(), side_->View());
    }
    if (!ref.ok()) Raise(ref.status());
    ref_ = std::make_unique<QualityReference>(std::move(*ref));
  }

  py::dict EvaluateConfig(const std::string& name) const {
    const CodecConfig cfg = ParseOrRaise(name);
    absl::StatusOr<QualityReport> rep = absl::InternalError("unset");
    {
      py::gil_scoped_release nogil;
      rep = ref_->EvaluateConfig(cfg);
    }
    if (!rep.ok()) Raise(rep.status());
    return ReportToDict(*rep);
  }

 private:
  std::unique_ptr<KvArray> kv_;
  std::unique_ptr<Side> side_;
  std::unique_ptr<QualityReference> ref_;
};

}  // namespace
}  // namespace adaptcache

PYBIND11_MODULE(_codec, m) {
  using namespace adaptcache;
  m.doc() = "AdaptCache codec library (CPU reference) on numpy arrays";
  // pybind11 (2.10) sets up its numpy API lazily in a C++ static whose first use imports
  // numpy while holding the GIL: two threads making their first array at once deadlock.
  // Set it up here, under the import lock (without numpy, the first array use fails instead).
  try {
    (void)py::dtype::of<float>();
  } catch (const py::error_already_set&) {
  }

  m.def("default_config_space", [] {
    std::vector<std::string> names;
    for (const CodecConfig& c : DefaultConfigSpace()) names.push_back(c.Name());
    return names;
  }, "Names of the daemon's default config space, raw first.");

  m.def("canonical_name", [](const std::string& name) { return ParseOrRaise(name).Name(); },
        py::arg("config"), "Parses and validates a config name; returns its canonical form.");

  m.def("family", [](const std::string& name) {
    return std::string(CodecFamilyName(ParseOrRaise(name).family));
  }, py::arg("config"), "Codec family of a config: raw, fp8, quant, drop or lowrank.");

  m.def("is_applicable", [](const std::string& name, const py::array& kv, const std::string& dtype) {
    const KvArray a = ToKv(kv, dtype);
    return CheckApplicable(ParseOrRaise(name), a.shape).ok();
  }, py::arg("config"), py::arg("kv"), py::arg("dtype") = "");

  m.def("max_encoded_bytes", [](const std::string& name, const py::array& kv, const std::string& dtype) {
    const KvArray a = ToKv(kv, dtype);
    return MaxEncodedBytes(ParseOrRaise(name), a.shape);
  }, py::arg("config"), py::arg("kv"), py::arg("dtype") = "");

  m.def("encode", [](const std::string& name, const py::array& kv, const py::object& importance,
                     const py::object& probes, const std::string& dtype) {
    const CodecConfig cfg = ParseOrRaise(name);
    const KvArray a = ToKv(kv, dtype);
    const Side side = ToSide(a.shape, importance, probes);
    absl::StatusOr<std::vector<std::byte>> out = absl::InternalError("unset");
    {
      py::gil_scoped_release nogil;
      out = EncodeToVector(cfg, a.shape, a.span(), side.View());
    }
    if (!out.ok()) Raise(out.status());
    return py::bytes(reinterpret_cast<const char*>(out->data()), out->size());
  }, py::arg("config"), py::arg("kv"), py::arg("importance") = py::none(),
     py::arg("probes") = py::none(), py::arg("dtype") = "",
     "Encodes a [2,L,T,H,D] array into a self-describing container (bytes).");

  m.def("decode", &DecodeToArray, py::arg("container"),
        "Decodes a container into a new [2,L,T,H,D] array of its original dtype "
        "(bf16 as uint16). Dropped tokens decode as zeros (see kept_tokens).");

  m.def("kept_tokens", [](const py::bytes& blob) {
    const std::string_view b = blob;
    auto kept = DecodeKeptTokens(ConstByteSpan(reinterpret_cast<const std::byte*>(b.data()), b.size()));
    if (!kept.ok()) Raise(kept.status());
    py::array_t<uint32_t> out(static_cast<py::ssize_t>(kept->size()));
    if (!kept->empty()) std::memcpy(out.mutable_data(), kept->data(), kept->size() * sizeof(uint32_t));
    return out;
  }, py::arg("container"), "Token positions a decode reconstructs (all but the dropped ones).");

  m.def("config_of", [](const py::bytes& blob) {
    const std::string_view b = blob;
    auto view = ParseContainer(ConstByteSpan(reinterpret_cast<const std::byte*>(b.data()), b.size()));
    if (!view.ok()) Raise(view.status());
    auto cfg = ConfigOf(*view);
    if (!cfg.ok()) Raise(cfg.status());
    return cfg->Name();
  }, py::arg("container"), "Config name a container was encoded with.");

  py::class_<PyQualityReference>(m, "QualityReference",
                                 "Per-entry reference data of the quality proxies "
                                 "(kernels/quality_proxy.h); build once, evaluate many configs.")
      .def(py::init<const py::array&, const py::object&, const py::object&, const std::string&>(),
           py::arg("kv"), py::arg("importance") = py::none(), py::arg("probes") = py::none(),
           py::arg("dtype") = "")
      .def("evaluate_config", &PyQualityReference::EvaluateConfig, py::arg("config"),
           "Encode + decode + compare; returns a dict with proxy, k/v_rel_error and per-layer data.");
}
