// The quantizers beyond "none", registered with the engine's strategies
// (formats and kernels: quant/quantizers.hpp).
#include "engine/registry.hpp"
#include "quant/quantizers.hpp"

namespace udaci {

namespace {

// head= and embed= (default int8), shared by int8 / int4 / nf4.
void read_head_embed(const StrategyOptions& o, const std::string& owner, WeightQuantOptions& q) {
  q.head = parse_weight_format(owner, "head", o.get_string(owner, "head", "int8"));
  q.embed = parse_weight_format(owner, "embed", o.get_string(owner, "embed", "int8"));
}

}  // namespace

void register_quantizers(StrategyRegistry& r) {
  r.quantizers.add("int8", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    const std::string owner = "quantizer 'int8'";
    o.expect_only(owner, {"head", "embed"});
    WeightQuantOptions q;
    q.name = "int8";
    q.projections = WeightFormat::kInt8;
    read_head_embed(o, owner, q);
    return make_weight_quantizer(q);
  });
  r.quantizers.add("int4", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
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
  r.quantizers.add("nf4", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    const std::string owner = "quantizer 'nf4'";
    o.expect_only(owner, {"group", "head", "embed"});
    WeightQuantOptions q;
    q.name = "nf4";
    q.projections = WeightFormat::kNF4;
    q.group = o.get_int(owner, "group", 32);
    read_head_embed(o, owner, q);
    return make_weight_quantizer(q);
  });
  r.quantizers.add("gguf-native", [](const StrategyOptions& o) -> std::unique_ptr<Quantizer> {
    o.expect_only("quantizer 'gguf-native'", {});
    return make_gguf_native_quantizer();
  });
}

}  // namespace udaci
