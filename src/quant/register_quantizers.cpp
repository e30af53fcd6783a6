// The quantizers, registered by name (formats and kernels:
// quant/quantizers.hpp; stored-format detection: quant/stored_format.hpp).
#include "core/error.hpp"
#include "quant/quantizers.hpp"
#include "quant/stored_format.hpp"

namespace udaci {

int64_t stored_bytes(const WeightStore& store) {
  int64_t n = 0;
  for (const auto& kv : store.bytes_by_type()) n += static_cast<int64_t>(kv.second);
  return n;
}

namespace {

// Keeps the weights as stored; the dense kernels LlamaModel binds stay. A
// store quantised offline (a `udaci convert` artefact) runs its stored
// format: int8 / int4 / nf4 weights are recognised by their companion
// tensors and bound to that format's kernel.
class NoQuantizer final : public Quantizer {
 public:
  const char* name() const override { return "none"; }
  QuantizeReport quantize(WeightStore& store) const override {
    const int64_t b = stored_bytes(store);
    return {b, b, 0};
  }
  std::unique_ptr<LinearKernel> make_kernel(const LinearSpec& spec, const WeightStore& store,
                                            const ModelOptions& opt) const override {
    const std::optional<StoredQuantFormat> f = stored_quant_format(store, spec.weight, spec.in_features);
    if (!f) return nullptr;
    WeightQuantOptions q;
    q.name = weight_format_name(f->format);
    q.projections = q.head = q.embed = f->format;
    if (f->group > 0) q.group = f->group;
    return make_weight_quantizer(q)->make_kernel(spec, store, opt);
  }
};

// head= and embed= (default int8), shared by int8 / int4 / nf4.
void read_head_embed(const StrategyOptions& o, const std::string& owner, WeightQuantOptions& q) {
  q.head = parse_weight_format(owner, "head", o.get_string(owner, "head", "int8"));
  q.embed = parse_weight_format(owner, "embed", o.get_string(owner, "embed", "int8"));
}

}  // namespace

void register_quantizers(QuantizerFactories& r) {
  r.add("none", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    o.expect_only("quantizer 'none'", {});
    return std::make_unique<NoQuantizer>();
  });
  r.add("int8", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    const std::string owner = "quantizer 'int8'";
    o.expect_only(owner, {"head", "embed"});
    WeightQuantOptions q;
    q.name = "int8";
    q.projections = WeightFormat::kInt8;
    read_head_embed(o, owner, q);
    return make_weight_quantizer(q);
  });
  r.add("int4", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    const std::string owner = "quantizer 'int4'";
    o.expect_only(owner, {"group", "scheme", "head", "embed"});
    WeightQuantOptions q;
    q.name = "int4";
    const std::string scheme = o.get_string(owner, "scheme", "affine");
    UDACI_CHECK(scheme == "affine" || scheme == "nf4",
                "{}: option 'scheme' must be affine or nf4, got '{}'", owner, scheme);
    q.projections = scheme == "nf4" ? WeightFormat::kNF4 : WeightFormat::kInt4;
    q.group = o.get_int(owner, "group", 32);
    read_head_embed(o, owner, q);
    return make_weight_quantizer(q);
  });
  r.add("nf4", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    const std::string owner = "quantizer 'nf4'";
    o.expect_only(owner, {"group", "head", "embed"});
    WeightQuantOptions q;
    q.name = "nf4";
    q.projections = WeightFormat::kNF4;
    q.group = o.get_int(owner, "group", 32);
    read_head_embed(o, owner, q);
    return make_weight_quantizer(q);
  });
  r.add("gguf-native", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    o.expect_only("quantizer 'gguf-native'", {});
    return make_gguf_native_quantizer();
  });
}

}  // namespace udaci
