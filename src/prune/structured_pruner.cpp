#include <cmath>

#include "core/error.hpp"
#include "prune/pruners.hpp"
#include "model/llama_names.hpp"
#include "prune/prune_util.hpp"

namespace udaci {

StructuredPruner::StructuredPruner(StructuredOptions options) : options_(options) {
  UDACI_CHECK(options_.fraction >= 0.0 && options_.fraction < 1.0,
              "pruner 'structured': option \"fraction\" must be in [0, 1), got {}", options_.fraction);
  UDACI_CHECK(options_.align >= 1 && options_.align <= 4096,
              "pruner 'structured': option \"align\" must be in [1, 4096], got {}", options_.align);
  UDACI_CHECK(options_.norm == "max" || options_.norm == "l2",
              "pruner 'structured': option \"norm\" must be \"max\" or \"l2\", got \"{}\"",
              options_.norm);
  UDACI_CHECK(options_.heads >= 0.0 && options_.heads < 1.0,
              "pruner 'structured': option \"heads\" must be in [0, 1), got {}", options_.heads);
}

int64_t StructuredPruner::kept_head_groups(int64_t kv_heads, const StructuredOptions& o) {
  if (o.heads == 0.0) return kv_heads;
  const int64_t keep = std::llround(static_cast<double>(kv_heads) * (1.0 - o.heads));
  return std::min<int64_t>(kv_heads, std::max<int64_t>(1, keep));
}

at::Tensor StructuredPruner::channel_scores(const at::Tensor& gate, const at::Tensor& up,
                                           const at::Tensor& down, const std::string& norm) {
  // In double: the product of three norms spans many decades.
  at::Tensor g = gate.to(at::kDouble), u = up.to(at::kDouble), d = down.to(at::kDouble);
  if (norm == "l2") return g.norm(2, {1}) * u.norm(2, {1}) * d.norm(2, {0});
  return std::get<0>(g.abs().max(1)) * std::get<0>(u.abs().max(1)) * std::get<0>(d.abs().max(0));
}

int64_t StructuredPruner::kept_channels(int64_t intermediate, const StructuredOptions& o) {
  if (o.fraction == 0.0) return intermediate;  // no rounding: the model stays exactly as it was
  const double target = static_cast<double>(intermediate) * (1.0 - o.fraction);
  int64_t keep = std::llround(target / static_cast<double>(o.align)) * o.align;
  // At least one aligned block (or everything, if the layer is smaller).
  keep = std::max<int64_t>(keep, std::min<int64_t>(o.align, intermediate));
  return std::min<int64_t>(keep, intermediate);
}

namespace {

// Removes whole K/V head groups of every layer (see StructuredOptions::heads).
void prune_head_groups(WeightStore& store, ModelConfig& config, int64_t keep_groups,
                       PruneReport& report) {
  const int64_t kv = config.num_kv_heads, hd = config.head_dim;
  UDACI_CHECK_S(Status::kBadModelFile, kv > 0 && hd > 0 && config.num_heads % kv == 0,
                "pruner 'structured': {} query heads do not divide into {} K/V heads",
                config.num_heads, kv);
  const int64_t per = config.num_heads / kv;  // query heads per group
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const std::string qp = llama_layer_name(l, LlamaPart::kQ), kp = llama_layer_name(l, LlamaPart::kK),
                      vp = llama_layer_name(l, LlamaPart::kV), op = llama_layer_name(l, LlamaPart::kO);
    const std::string qn = qp + ".weight", kn = kp + ".weight", vn = vp + ".weight", on = op + ".weight";
    const TensorEntry& qe = projection_entry(store, qn);
    const TensorEntry& ke = projection_entry(store, kn);
    const TensorEntry& ve = projection_entry(store, vn);
    const TensorEntry& oe = projection_entry(store, on);
    UDACI_CHECK_S(Status::kBadModelFile,
                  qe.shape[0] == config.num_heads * hd && ke.shape[0] == kv * hd &&
                      ve.shape[0] == kv * hd && oe.shape[1] == config.num_heads * hd,
                  "pruner 'structured': layer {} attention shapes q {} k {} v {} o-in {} do not "
                  "match {} heads / {} K/V heads of {}",
                  l, qe.shape[0], ke.shape[0], ve.shape[0], oe.shape[1], config.num_heads, kv, hd);
    at::Tensor q = store.tensor(qn, at::kDouble).view({kv, per * hd, -1});
    at::Tensor k = store.tensor(kn, at::kDouble).view({kv, hd, -1});
    at::Tensor v = store.tensor(vn, at::kDouble).view({kv, hd, -1});
    at::Tensor o = store.tensor(on, at::kDouble);  // [hidden, heads * hd]
    at::Tensor og = o.view({o.size(0), kv, per * hd}).transpose(0, 1);  // [kv, hidden, per*hd]
    auto amax = [](const at::Tensor& t) { return t.abs().flatten(1).amax(1); };
    at::Tensor score = amax(q) * amax(k) * amax(v) * amax(og);  // [kv]
    at::Tensor order = std::get<1>(at::sort(-score, /*stable=*/true, 0, false));
    at::Tensor kept = std::get<0>(at::sort(order.slice(0, 0, keep_groups)));  // [keep] groups
    // Rows (q, k, v) and columns (o) of the kept groups, in order.
    at::Tensor q_rows = (kept.unsqueeze(1) * (per * hd) + at::arange(per * hd, kept.options()))
                            .flatten();
    at::Tensor kv_rows = (kept.unsqueeze(1) * hd + at::arange(hd, kept.options())).flatten();
    struct Part {
      const std::string* name;
      const TensorEntry* entry;
      at::Tensor pruned;
    };
    Part parts[] = {
        {&qn, &qe, store.tensor(qn, at::kFloat).index_select(0, q_rows)},
        {&kn, &ke, store.tensor(kn, at::kFloat).index_select(0, kv_rows)},
        {&vn, &ve, store.tensor(vn, at::kFloat).index_select(0, kv_rows)},
        {&on, &oe, store.tensor(on, at::kFloat).index_select(1, q_rows)},
    };
    for (Part& part : parts) {
      const int64_t before = part.entry->numel();
      const WeightType type = pruned_storage_type(part.entry->type);
      const std::string source = part.entry->source;
      put_tensor(store, *part.name, part.pruned, type, source + " (pruned: structured heads)");
      report.tensors.push_back({*part.name, before - part.pruned.numel(), before});
    }
    if (config.attention_bias) {
      for (const auto& [name, rows] : {std::pair<std::string, at::Tensor>{qp + ".bias", q_rows},
                                       {kp + ".bias", kv_rows},
                                       {vp + ".bias", kv_rows}}) {
        const TensorEntry& be = store.entry(name);
        put_tensor(store, name, store.tensor(name, at::kFloat).index_select(0, rows),
                   pruned_storage_type(be.type), be.source + " (pruned: structured heads)");
      }
    }
  }
  config.num_heads = keep_groups * per;
  config.num_kv_heads = keep_groups;
}

}  // namespace

PruneReport StructuredPruner::prune(WeightStore& store, ModelConfig& config) const {
  PruneReport report;
  const int64_t groups = kept_head_groups(config.num_kv_heads, options_);
  if (groups < config.num_kv_heads) prune_head_groups(store, config, groups, report);
  const int64_t inter = config.intermediate_size;
  const int64_t keep = kept_channels(inter, options_);
  if (keep == inter) return report;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    const std::string gate_p = llama_layer_name(l, LlamaPart::kGate), up_p = llama_layer_name(l, LlamaPart::kUp);
    const std::string gate_n = gate_p + ".weight", up_n = up_p + ".weight",
                      down_n = llama_layer_name(l, LlamaPart::kDown) + ".weight";
    const TensorEntry& ge = projection_entry(store, gate_n);
    const TensorEntry& ue = projection_entry(store, up_n);
    const TensorEntry& de = projection_entry(store, down_n);
    UDACI_CHECK_S(Status::kBadModelFile,
                  ge.shape[0] == inter && ue.shape[0] == inter && de.shape[1] == inter,
                  "pruner 'structured': layer {} has gate {} x {}, up {} x {}, down {} x {}, but "
                  "the config's intermediate_size is {}",
                  l, ge.shape[0], ge.shape[1], ue.shape[0], ue.shape[1], de.shape[0], de.shape[1],
                  inter);
    at::Tensor gate = store.tensor(gate_n, at::kFloat);  // [inter, hidden]
    at::Tensor up = store.tensor(up_n, at::kFloat);      // [inter, hidden]
    at::Tensor down = store.tensor(down_n, at::kFloat);  // [hidden, inter]
    at::Tensor score = channel_scores(gate, up, down, options_.norm);  // [inter]
    // The `keep` best, back in their original order so that f = 0 is the
    // identity and the channel layout stays recognisable. A stable sort on
    // -score breaks ties towards the lower index.
    at::Tensor order = std::get<1>(at::sort(-score, /*stable=*/true, /*dim=*/0, false));
    at::Tensor kept = std::get<0>(at::sort(order.slice(0, 0, keep)));  // [keep] int64

    struct Part {
      const std::string* name;
      at::Tensor pruned;
      WeightType type;
      std::string source;
    };
    Part parts[] = {
        {&gate_n, gate.index_select(0, kept), pruned_storage_type(ge.type), ge.source},
        {&up_n, up.index_select(0, kept), pruned_storage_type(ue.type), ue.source},
        {&down_n, down.index_select(1, kept), pruned_storage_type(de.type), de.source},
    };
    if (config.mlp_bias) {
      for (const std::string& b : {gate_p + ".bias", up_p + ".bias"}) {
        const TensorEntry& be = store.entry(b);
        put_tensor(store, b, store.tensor(b, at::kFloat).index_select(0, kept),
                   pruned_storage_type(be.type), be.source + " (pruned: structured)");
      }
    }
    for (Part& part : parts) {
      const int64_t before = store.entry(*part.name).numel();
      put_tensor(store, *part.name, part.pruned, part.type, part.source + " (pruned: structured)");
      report.tensors.push_back({*part.name, before - part.pruned.numel(), before});
    }
  }
  config.intermediate_size = keep;
  return report;
}

}  // namespace udaci
