"""check_layering.py flags what it must and passes a clean tree (issue #23)."""

import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_layering  # noqa: E402


def tree(files: dict) -> str:
    root = tempfile.mkdtemp()
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    return root


class CheckLayering(unittest.TestCase):
    def test_forbidden_edges_and_macro_are_reported(self):
        src = tree({
            "io/reader.cpp": '#include "io/mapped.hpp"\n#include "model/model_config.hpp"\n',
            "decode/beam.cpp": '#include "engine/registry.hpp"\n',
            "quant/q.hpp": '#  include "engine/strategy_options.hpp"\n',
            "model/llama.cpp": '#include "core/error.hpp"\n#ifdef UDACI_WITH_CUDA\n#endif\n',
            "model/gemv.cpp": '#include "quant/cpu_features.hpp"\n',
        })
        problems = check_layering.check(src)
        text = "\n".join(problems)
        self.assertEqual(len(problems), 5, text)
        for expected in ("io -> model", "decode -> engine", "quant -> engine", "model -> quant",
                         "UDACI_WITH_CUDA in src/model"):
            self.assertIn(expected, text)
        self.assertEqual(check_layering.main(["--src", src]), 1)

    def test_allowed_edges_pass(self):
        src = tree({
            "engine/e.cpp": '#include "model/llama_model.hpp"\n#include "quant/quantizer.hpp"\n',
            "quant/q.cpp": '#include "model/linear.hpp"\n#include "io/weight_store.hpp"\n',
            "kernels/cuda/b.cpp": '#include "model/layer_backend.hpp"\n#ifdef UDACI_WITH_CUDA\n#endif\n',
            "model/m.cpp": '#include "core/cpu_features.hpp"\n// "engine/x.hpp" in a comment\n',
        })
        self.assertEqual(check_layering.check(src), [])
        self.assertEqual(check_layering.main(["--src", src]), 0)

    def test_the_repository_passes(self):
        self.assertEqual(check_layering.main([]), 0)


if __name__ == "__main__":
    unittest.main()
