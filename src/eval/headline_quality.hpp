// What ROUGE does not see in a headline (issue #26): an empty line, a loop
// ("A New Investigation into the Abuse of Power and Power Abuse: A New
// Investigation into ..."), or a headline that ran into the token limit
// instead of ending. `udaci bench` reports the share of such headlines and
// `udaci tune` can hold it under a floor.
#pragma once

#include <string>
#include <vector>

#include "decode/generate.hpp"

namespace udaci {

enum class Degeneracy { kNone, kEmpty, kRepetitive, kOverlong };

// "none", "empty", "repetitive", "overlong".
const char* degeneracy_name(Degeneracy d);

// Lower-cased words of `text`: runs of ASCII letters, digits and
// apostrophes, and of non-ASCII bytes (UTF-8 letters stay inside a word).
std::vector<std::string> headline_words(const std::string& text);

// True when some run of `n` consecutive words occurs twice (word bigrams by
// default: tools/bench/repetition.py's "repetitive_bigram_share").
bool repeats_word_ngram(const std::string& text, size_t n = 2);

// Empty (no word) first, then repetitive, then overlong (the decoder stopped
// at max_new_tokens: the headline never ended).
Degeneracy classify_headline(const std::string& headline, FinishReason finish);

}  // namespace udaci
