// The Porter stemmer (M. F. Porter, "An algorithm for suffix stripping",
// Program 14(3):130-137, 1980) in the variant NLTK calls NLTK_EXTENSIONS, the
// default mode of nltk.stem.porter.PorterStemmer and the one Google's
// rouge-score uses for ROUGE with stemming. It differs from the 1980 paper in
// a handful of rules (Martin Porter's later changes plus NLTK's own): an
// irregular-forms table (sky/skies, dying, news, innings ...), "ies"/"ied"
// on four-letter words, Y -> I only after a consonant that is not the whole
// stem, "bli" -> "ble", "alli", "fulli" and "logi" in step 2, the two-letter
// *o condition, and words of one or two letters left alone.
#pragma once

#include <string>
#include <string_view>

namespace udaci {

// The stem of one word. ASCII letters are lower-cased first (as NLTK does with
// its default to_lowercase=true); every other byte, digits included, counts as
// a consonant, exactly as NLTK treats characters outside "aeiouy". NLTK lowers
// non-ASCII letters too; ROUGE never passes them (its tokenizer keeps only
// [a-z0-9]), so this function is exact for every token ROUGE produces and for
// any ASCII word.
std::string porter_stem(std::string_view word);

}  // namespace udaci
