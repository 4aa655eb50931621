// libFuzzer target: every tokenizer plugin's load() of saved state (what a checkpoint and the
// tokenizer cache hand back), then encode and decode with what was loaded.
// Input: the tokenizer plugin's name, a newline, then the state (e.g. "char\n<the vocabulary>"). Contract: load()
// accepts the state or throws a std::exception (the host reports it with the file it came from); after a load that
// succeeded, encoding a fixed text and decoding the ids back throws a std::exception or returns, never crashes, and
// every id is inside [0, vocab_size()).
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <lmgrid/base/params.hpp>
#include <lmgrid/plugin/plugin.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "fuzz_support.hpp"

namespace {
using namespace lmgrid;

struct Tokenizers {
  std::vector<std::string> names;
  std::vector<const TokenizerPlugin*> plugins;
  std::vector<Params> params;  // each plugin's declared defaults
};

const Tokenizers& tokenizers() {
  static Registry registry({LMGRID_FUZZ_PLUGIN_DIR});
  static Tokenizers t = [] {
    Tokenizers out;
    for (const LoadedPlugin* p : registry.list(PluginKind::tokenizer)) {
      // sentencepiece hands the state to libsentencepiece, which must be opened with
      // RTLD_DEEPBIND (its protobuf clashes with LibTorch's); AddressSanitizer refuses that flag,
      // and without it libprotobuf crashes on the first model. Its load() is covered by
      // tests/cli/test_tokenize.sh against the reference spm_encode instead.
      if (p->plugin->name() == "sentencepiece") continue;
      out.names.push_back(p->plugin->name());
      out.plugins.push_back(static_cast<const TokenizerPlugin*>(p->plugin.get()));
      out.params.push_back(validate_params(out.plugins.back()->params(), {}, p->plugin->name()));
    }
    if (out.plugins.empty()) fuzz::contract_broken("no tokenizer plugin in " LMGRID_FUZZ_PLUGIN_DIR);
    return out;
  }();
  return t;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("LMGRID_OFFLINE", "1", 1);  // a pretrained vocabulary is never downloaded while fuzzing
  tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Tokenizers& t = tokenizers();
  const std::string input(reinterpret_cast<const char*>(data), size);
  const size_t nl = input.find('\n');
  if (nl == std::string::npos) return 0;
  size_t which = 0;
  while (which < t.names.size() && t.names[which] != input.substr(0, nl)) ++which;
  if (which == t.names.size()) return 0;  // not a tokenizer's name
  const std::string state = input.substr(nl + 1);
  std::shared_ptr<Tokenizer> tok;
  try {
    tok = t.plugins[which]->create(t.params[which]);
  } catch (const std::exception& e) {
    fuzz::contract_broken("creating a tokenizer with its defaults threw " + fuzz::describe(e));
  }
  try {
    tok->load(state);
  } catch (const std::exception&) {
    return 0;  // refused, with a message
  }
  try {
    const std::vector<int64_t> ids = tok->encode("To be, or not to be: that is the question.\n\xc3\xa9\xe2\x82\xac");
    const int64_t v = tok->vocab_size();
    for (int64_t id : ids)
      if (id < 0 || id >= v) fuzz::contract_broken("encode gave id " + std::to_string(id) + " outside the vocabulary");
    (void)tok->decode(ids);
  } catch (const std::exception&) {
  }
  return 0;
}
