// Tokenizer encode speed on one core: MB/s of Tokenizer::encode over a whole text (default the
// TinyStories train sample, 2.1 MB), the tokenizer built from the installed plugin as a run
// builds it (vocabulary loaded once, outside the timing). Prints every run and the median.
//
//   build/bin/bench_tokenize [--tokenizer bpe] [--set pretrained=gpt2]... [--source NAME|FILE] [--runs 7]
//
// A learning tokenizer (bpe without pretrained) is fitted on the source first (not timed).
// tools/bench/bench_tokenize.sh pins it to one core and sets the data path.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <lmgrid/base/params.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/data/data_source.hpp>
#include <lmgrid/plugin/registry.hpp>

using namespace lmgrid;

int main(int argc, char** argv) {
  std::string name = "bpe", source = "tinystories_train_sample";
  std::map<std::string, Value> values;
  int runs = 7;
  bool sets = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--tokenizer") {
      name = v;
    } else if (a == "--source") {
      source = v;
    } else if (a == "--runs") {
      runs = std::max(1, std::atoi(v.c_str()));
    } else if (a == "--set" && v.find('=') != std::string::npos) {
      std::string key = v.substr(0, v.find('=')), val = v.substr(v.find('=') + 1);
      bool integer = !val.empty() && val.find_first_not_of("0123456789") == std::string::npos;
      values[key] = integer ? Value(static_cast<int64_t>(std::stoll(val))) : Value(val);
      sets = true;
    } else {
      std::fprintf(stderr, "usage: %s [--tokenizer NAME] [--set K=V]... [--source NAME|FILE] [--runs N]\n", argv[0]);
      return 2;
    }
  }
  if (!sets && name == "bpe") values["pretrained"] = std::string("gpt2");
  try {
    const auto& tp = static_cast<const TokenizerPlugin&>(*Registry::instance().get(PluginKind::tokenizer, name).plugin);
    auto tok = tp.create(validate_params(tp.params(), values, "--set"));
    std::string text = read_file(resolve_source(source));
    if (tok->vocab_size() == 0) tok->fit(text);
    std::vector<double> mbps;
    size_t tokens = 0;
    for (int r = 0; r < runs; ++r) {
      double t0 = monotonic_seconds();
      tokens = tok->encode(text).size();
      double s = monotonic_seconds() - t0;
      mbps.push_back(static_cast<double>(text.size()) / 1e6 / s);
      std::printf("run %d: %.2f MB/s (%.3f s)\n", r + 1, mbps.back(), s);
    }
    std::sort(mbps.begin(), mbps.end());
    std::printf("tokenizer %s on %s: %zu bytes -> %zu tokens (%.3f bytes/token)\n", name.c_str(), source.c_str(),
                text.size(), tokens, static_cast<double>(text.size()) / static_cast<double>(tokens));
    std::printf("median encode speed over %d runs, 1 thread: %.2f MB/s\n", runs, mbps[mbps.size() / 2]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_tokenize: %s\n", e.what());
    return 1;
  }
}
