#include "quant/quantizers.hpp"

#include <vector>
#include <fmt/ranges.h>  // fmt::join (fmt >= 11 keeps it here)

#include "core/error.hpp"
#include "io/gguf_quants.hpp"
#include "model/llama_names.hpp"
#include "model/llama_model.hpp"
#include "quant/quant_formats.hpp"
#include "quant/quantized_linear.hpp"
#include "core/strings.hpp"

namespace udaci {

const char* weight_format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kNone: return "none";
    case WeightFormat::kInt8: return "int8";
    case WeightFormat::kInt4: return "int4";
    case WeightFormat::kNF4: return "nf4";
  }
  return "?";
}

WeightFormat parse_weight_format(const std::string& owner, const std::string& key,
                                 const std::string& value) {
  if (value == "none") return WeightFormat::kNone;
  if (value == "int8") return WeightFormat::kInt8;
  if (value == "int4") return WeightFormat::kInt4;
  if (value == "nf4") return WeightFormat::kNF4;
  fail(Status::kInvalidArgument, "{}: option '{}' must be none, int8, int4 or nf4, got '{}'", owner,
       key, value);
}

namespace {

enum class Role { kProjection, kHead, kEmbed };

// A separate "lm_head.*" tensor exists (as stored, float or quantised): the
// model is not tied.
bool has_own_head(const WeightStore& store) {
  for (const std::string& n : store.names())
    if (starts_with(n, std::string(kLlamaHead) + ".")) return true;
  return false;
}

bool is_float_source(WeightType t) { return t != WeightType::kI8 && t != WeightType::kU8; }

std::shared_ptr<std::vector<uint8_t>> buffer(size_t n) {
  return std::make_shared<std::vector<uint8_t>>(n);
}

void put_buffer(WeightStore& store, const std::string& name, WeightType type,
                std::vector<int64_t> shape, std::shared_ptr<std::vector<uint8_t>> buf,
                const std::string& source) {
  TensorEntry e;
  e.name = name;
  e.type = type;
  e.shape = std::move(shape);
  e.data = buf->data();
  e.nbytes = buf->size();
  e.owner = std::move(buf);
  e.source = source;
  store.put(std::move(e));
}

int64_t entry_bytes(const TensorEntry& e) { return static_cast<int64_t>(e.nbytes); }

class WeightQuantizer final : public Quantizer {
 public:
  explicit WeightQuantizer(WeightQuantOptions o) : o_(std::move(o)) {}
  const char* name() const override { return o_.name.c_str(); }

  QuantizeReport quantize(WeightStore& store) const override {
    QuantizeReport rep;
    rep.bytes_before = stored_bytes(store);
    const bool own_head = has_own_head(store);
    for (const std::string& name : store.names()) {
      if (!ends_with(name, ".weight")) continue;
      const std::string prefix = name.substr(0, name.size() - 7);
      std::vector<Role> roles;
      const std::optional<LlamaLayerTensor> part = parse_llama_layer_name(prefix);
      if (part && llama_parts()[static_cast<size_t>(part->part)].projection) {
        roles = {Role::kProjection};
      } else if (prefix == kLlamaHead) {
        roles = {Role::kHead};
      } else if (prefix == kLlamaEmbed) {
        roles = own_head ? std::vector<Role>{Role::kEmbed}
                         : std::vector<Role>{Role::kEmbed, Role::kHead};
      } else {
        continue;  // norms and anything else stay as stored
      }
      const TensorEntry& e = store.entry(name);
      if (e.shape.size() != 2 || !is_float_source(e.type)) continue;  // ours already
      const bool tied = prefix == kLlamaEmbed && !own_head;
      at::Tensor w;  // [out, in] fp32, read once before anything replaces it
      bool float_needed = false;
      for (Role role : roles) {
        const WeightFormat fmt = format_of(role);
        const std::string stem = stem_of(prefix, role, tied);
        if (fmt == WeightFormat::kNone || !applicable(fmt, e.shape[1])) {
          float_needed = true;
          continue;
        }
        if (has_format(store, stem, fmt)) continue;
        if (!w.defined()) w = store.tensor(name, at::kFloat).contiguous();
        write_format(store, stem, fmt, w, e.source);
        ++rep.tensors_changed;
      }
      // The float weight goes unless a role still reads it (an int8 stem of
      // "<w>.weight" has already replaced it).
      if (!float_needed && is_float_source(store.entry(name).type)) store.remove(name);
    }
    rep.bytes_after = stored_bytes(store);
    return rep;
  }

  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    const Role role = spec.role == LinearRole::kProjection ? Role::kProjection
                      : spec.role == LinearRole::kLmHead   ? Role::kHead
                                                           : Role::kEmbed;
    const bool tied = spec.weight == kLlamaEmbed && (role == Role::kHead || !has_own_head(store));
    // A tied head in the embedding's format shares its kernel (LlamaModel
    // binds the embedding's kernel when the factory returns nullptr).
    if (role == Role::kHead && tied && o_.head == o_.embed) return nullptr;
    const WeightFormat fmt = format_of(role);
    const std::string fname = spec.weight + ".weight";
    if (fmt == WeightFormat::kNone) {
      if (role == Role::kHead && tied) {
        // Float head beside a quantised embedding: a dense kernel of its own.
        return make_dense_kernel(store.tensor(fname, opt.dtype), {});
      }
      return nullptr;
    }
#ifdef UDACI_WITH_CUDA
    // CUDA builds (issue #10): the kernel is built on the host, then uploaded.
    UDACI_CHECK_S(Status::kUnsupported, opt.device.is_cpu() || opt.device.is_cuda(),
                  "quantizer '{}' has CPU and CUDA kernels only (model device {})", o_.name,
                  opt.device.str());
#else
    UDACI_CHECK_S(Status::kUnsupported, opt.device.is_cpu(),
                  "quantizer '{}' has CPU kernels only (model device {})", o_.name,
                  opt.device.str());
#endif
    const std::string stem = stem_of(spec.weight, role, tied);
    QuantizedKernelParts parts;
    if (has_format(store, stem, fmt)) {
      parts = parts_from_store(store, stem, fmt, spec);
    } else if (store.has(fname) && is_float_source(store.entry(fname).type) &&
               applicable(fmt, spec.in_features)) {
      // Not quantised offline (quantize() was not run on this store): do it
      // now, in memory the kernel owns.
      WeightStore tmp;
      write_format(tmp, stem, fmt, store.tensor(fname, at::kFloat).contiguous(),
                   store.entry(fname).source);
      parts = parts_from_store(tmp, stem, fmt, spec);
    } else {
      return nullptr;  // stays dense (e.g. in_features not a multiple of the group)
    }
    if (spec.bias) {
      parts.bias = store.tensor(spec.weight + ".bias", at::kFloat).contiguous();
      parts.bytes += parts.bias.numel() * 4;
    }
#ifdef UDACI_WITH_CUDA
    if (opt.device.is_cuda()) return make_quantized_cuda_kernel(parts, opt.device);
#endif
    return make_quantized_kernel(std::move(parts));
  }

 private:
  WeightFormat format_of(Role r) const {
    return r == Role::kProjection ? o_.projections : r == Role::kHead ? o_.head : o_.embed;
  }

  bool applicable(WeightFormat f, int64_t in) const {
    return f == WeightFormat::kInt8 || in % o_.group == 0;
  }

  // Where a role's tensors live (see quant_formats.hpp).
  std::string stem_of(const std::string& prefix, Role role, bool tied) const {
    if (!tied || o_.head == o_.embed) return prefix + ".weight";
    if (role == Role::kHead) return o_.head == WeightFormat::kNone ? prefix + ".weight" : prefix + ".head_weight";
    return o_.head == WeightFormat::kNone ? prefix + ".embed_weight" : prefix + ".weight";
  }

  static bool has_format(const WeightStore& s, const std::string& stem, WeightFormat f) {
    switch (f) {
      case WeightFormat::kInt8:
        return s.has(stem) && s.entry(stem).type == WeightType::kI8 && s.has(stem + "_scale");
      case WeightFormat::kInt4: return s.has(stem + "_packed") && s.has(stem + "_mins");
      case WeightFormat::kNF4: return s.has(stem + "_packed") && !s.has(stem + "_mins");
      case WeightFormat::kNone: return false;
    }
    return false;
  }

  void write_format(WeightStore& store, const std::string& stem, WeightFormat f,
                    const at::Tensor& w, const std::string& source) const {
    const int64_t rows = w.size(0), cols = w.size(1);
    const float* src = w.data_ptr<float>();
    if (f == WeightFormat::kInt8) {
      auto q = buffer(static_cast<size_t>(rows * cols));
      auto s = buffer(static_cast<size_t>(rows) * 4);
      quantize_int8_rows(src, rows, cols, reinterpret_cast<int8_t*>(q->data()),
                         reinterpret_cast<float*>(s->data()));
      put_buffer(store, stem, WeightType::kI8, {rows, cols}, q, source);
      put_buffer(store, stem + "_scale", WeightType::kF32, {rows}, s, source);
      return;
    }
    const bool nf4 = f == WeightFormat::kNF4;
    const int64_t groups = cols / o_.group;
    auto packed = buffer(static_cast<size_t>(rows * cols / 2));
    auto scales = buffer(static_cast<size_t>(rows * groups) * 2);
    auto mins = nf4 ? nullptr : buffer(static_cast<size_t>(rows * groups) * 2);
    quantize_int4_groups(src, rows, cols, o_.group, nf4, packed->data(),
                         reinterpret_cast<uint16_t*>(scales->data()),
                         nf4 ? nullptr : reinterpret_cast<uint16_t*>(mins->data()));
    put_buffer(store, stem + "_packed", WeightType::kU8, {rows, cols / 2}, packed, source);
    put_buffer(store, stem + "_scales", WeightType::kF16, {rows, groups}, scales, source);
    if (!nf4) put_buffer(store, stem + "_mins", WeightType::kF16, {rows, groups}, mins, source);
  }

  // Checks every stored tensor's type and shape against the spec.
  static const TensorEntry& expect(const WeightStore& s, const std::string& name, WeightType t,
                                   const std::vector<int64_t>& shape) {
    const TensorEntry& e = s.entry(name);
    UDACI_CHECK_S(Status::kBadModelFile, e.type == t && e.shape == shape,
                  "quantised tensor '{}' in '{}' is {} {}, expected {} {}", name, e.source,
                  weight_type_name(e.type), fmt::join(e.shape, "x"), weight_type_name(t),
                  fmt::join(shape, "x"));
    return e;
  }

  QuantizedKernelParts parts_from_store(const WeightStore& s, const std::string& stem,
                                        WeightFormat f, const LinearSpec& spec) const {
    const int64_t out = spec.out_features, in = spec.in_features;
    QuantizedKernelParts p;
    QMatrix& m = p.matrix;
    m.rows = out;
    m.cols = in;
    auto keep = [&](const TensorEntry& e) {
      p.owners.push_back(e.owner);
      p.bytes += entry_bytes(e);
      return e.data;
    };
    if (f == WeightFormat::kInt8) {
      m.format = QFormat::kI8Row;
      m.data = keep(expect(s, stem, WeightType::kI8, {out, in}));
      m.row_bytes = in;
      m.row_scale = reinterpret_cast<const float*>(keep(expect(s, stem + "_scale", WeightType::kF32, {out})));
      return p;
    }
    UDACI_CHECK_S(Status::kBadModelFile, in % 32 == 0,
                  "quantised tensor '{}_packed': {} input features are not a multiple of 32", stem, in);
    const TensorEntry& sc = s.entry(stem + "_scales");
    const int64_t groups = sc.shape.size() == 2 ? sc.shape[1] : 0;
    const int64_t group = groups > 0 && in % groups == 0 ? in / groups : 0;
    UDACI_CHECK_S(Status::kBadModelFile, group == 32 || group == 64 || group == 128,
                  "quantised tensor '{}_scales' in '{}': {} groups do not split {} inputs into "
                  "groups of 32, 64 or 128",
                  stem, sc.source, groups, in);
    m.format = f == WeightFormat::kNF4 ? QFormat::kNF4 : QFormat::kI4Affine;
    m.group = in / groups;
    m.data = keep(expect(s, stem + "_packed", WeightType::kU8, {out, in / 2}));
    m.row_bytes = in / 2;
    m.scales = reinterpret_cast<const uint16_t*>(keep(expect(s, stem + "_scales", WeightType::kF16, {out, groups})));
    if (f == WeightFormat::kInt4)
      m.mins = reinterpret_cast<const uint16_t*>(keep(expect(s, stem + "_mins", WeightType::kF16, {out, groups})));
    return p;
  }

  WeightQuantOptions o_;
};

// GGUF blocks run in place: nothing to rewrite offline.
class GgufNativeQuantizer final : public Quantizer {
 public:
  const char* name() const override { return "gguf-native"; }
  bool runs_stored_blocks() const override { return true; }
  QuantizeReport quantize(WeightStore& store) const override {
    const int64_t b = stored_bytes(store);
    return {b, b, 0};
  }
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    const std::string name = spec.weight + ".weight";
    if (!store.has(name)) return nullptr;
    const TensorEntry& e = store.entry(name);
    QFormat f;
    switch (e.type) {
      case WeightType::kQ8_0: f = QFormat::kQ8_0; break;
      case WeightType::kQ4_0: f = QFormat::kQ4_0; break;
      case WeightType::kQ4_1: f = QFormat::kQ4_1; break;
      case WeightType::kQ5_0: f = QFormat::kQ5_0; break;
      case WeightType::kQ5_1: f = QFormat::kQ5_1; break;
      case WeightType::kQ4_K: f = QFormat::kQ4_K; break;
      case WeightType::kQ5_K: f = QFormat::kQ5_K; break;
      case WeightType::kQ6_K: f = QFormat::kQ6_K; break;
      case WeightType::kF16:
      case WeightType::kBF16:
        // 16-bit floats as stored (half the bytes of fp32), widened in the
        // dense kernel's registers, for an fp32 model on the CPU.
        if (!opt.device.is_cpu() || opt.dtype != at::kFloat || e.shape.size() != 2) return nullptr;
        if (spec.role == LinearRole::kLmHead && spec.weight == kLlamaEmbed) return nullptr;
        return make_dense_kernel(store.tensor(name, weight_type_scalar_type(e.type)).contiguous(),
                                 spec.bias ? store.tensor(spec.weight + ".bias", at::kFloat) : at::Tensor());
      default: return nullptr;  // F32, Q2_K/Q3_K: dense, dequantised by the model
    }
    // The tied head shares the embedding's kernel (same blocks).
    if (spec.role == LinearRole::kLmHead && spec.weight == kLlamaEmbed) return nullptr;
    UDACI_CHECK_S(Status::kUnsupported, opt.device.is_cpu(),
                  "quantizer 'gguf-native' has CPU kernels only (model device {})", opt.device.str());
    UDACI_CHECK_S(Status::kBadModelFile,
                  e.shape == std::vector<int64_t>({spec.out_features, spec.in_features}),
                  "tensor '{}' in '{}' is {}, the model config implies [{}, {}]", name, e.source,
                  fmt::join(e.shape, "x"), spec.out_features, spec.in_features);
    QuantizedKernelParts p;
    p.matrix.format = f;
    p.matrix.rows = spec.out_features;
    p.matrix.cols = spec.in_features;
    p.matrix.data = e.data;
    const int64_t block = weight_type_block_elems(e.type);
    UDACI_CHECK_S(Status::kBadModelFile, spec.in_features % block == 0,
                  "tensor '{}' in '{}' is {}: rows of {} values are not whole {}-value blocks", name,
                  e.source, weight_type_name(e.type), spec.in_features, block);
    p.matrix.row_bytes = spec.in_features / block * weight_type_block_bytes(e.type);
    if (e.unpermute_heads > 0) p.row_order = stored_row_order(e);
    p.owners.push_back(e.owner);
    p.source_file = e.file;
    p.bytes = entry_bytes(e);
    if (spec.bias) {
      p.bias = store.tensor(spec.weight + ".bias", at::kFloat).contiguous();
      p.bytes += p.bias.numel() * 4;
    }
    return make_quantized_kernel(std::move(p));
  }
};

}  // namespace

std::unique_ptr<Quantizer> make_weight_quantizer(const WeightQuantOptions& options) {
  UDACI_CHECK(options.group == 32 || options.group == 64 || options.group == 128,
              "quantizer '{}': group must be 32, 64 or 128, got {}", options.name, options.group);
  return std::make_unique<WeightQuantizer>(options);
}

std::unique_ptr<Quantizer> make_gguf_native_quantizer() {
  return std::make_unique<GgufNativeQuantizer>();
}

}  // namespace udaci
