// `udaci rouge`: ROUGE over a JSON Lines file of (reference, generated) pairs.
// Input, one object per line:
//   {"id": any (optional, echoed), "reference": "..." | "references": ["...", ...],
//    "generated": "..."}
// Output, one object per input line, in order:
//   {"line": N, "id": ..., "rouge1": F, "rouge2": F, "rougeL": F, "rougeLsum": F}
// (F-measures as rouge-score computes them, shortest round-trip decimals), or
//   {"line": N, "error": "..."} for a line that cannot be scored, which is also
// reported on `err` as "<source>:N: ..." -- a bad line never stops the rest.
// Blank lines are skipped. A last line gives the means over the scored lines:
//   {"mean": {"rouge1": .., "rouge2": .., "rougeL": .., "rougeLsum": ..},
//    "count": scored lines, "errors": bad lines}
#pragma once

#include <iosfwd>
#include <string>

namespace udaci {

// Returns 0 when every line was scored, else int(Status::kInvalidArgument).
int run_rouge_jsonl(std::istream& in, const std::string& source, bool use_stemmer,
                    std::ostream& out, std::ostream& err);

}  // namespace udaci
