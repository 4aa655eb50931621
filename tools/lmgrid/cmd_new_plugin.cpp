// lmgrid new-plugin KIND NAME --dir DIR: scaffolds an out-of-tree plugin project that builds
// against the installed SDK (find_package(lmgrid)) and drops into LMGRID_PLUGIN_PATH.
#include <filesystem>
#include <fstream>
#include <regex>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

namespace {

const char* kCMake = R"TPL(cmake_minimum_required(VERSION 3.22)
project(@NAME@ LANGUAGES CXX)
set(CMAKE_CXX_STANDARD 17)
# The SDK: `cmake --install <lmgrid build> --prefix PREFIX`, then -DCMAKE_PREFIX_PATH=PREFIX.
find_package(lmgrid REQUIRED)
# Builds lmgrid_@KIND@_@NAME@.so into this build folder: add it to LMGRID_PLUGIN_PATH.
lmgrid_add_plugin(@NAME@ KIND @KIND@ SOURCES @NAME@.cpp OUTPUT_DIR ${CMAKE_BINARY_DIR})
)TPL";

const char* kArch = R"TPL(// arch/@NAME@: a starting point: token embedding -> MLP -> tied output head (a bigram-style
// model). Replace the body of forward() with your architecture; keep the contract in
// lmgrid/plugin.hpp: tokens (B, T) in, logits (B, T, V) out.
#include <lmgrid/nn.hpp>
#include <lmgrid/plugin.hpp>

namespace {

using namespace lmgrid;

class @CLASS@Model : public Model {
 public:
  @CLASS@Model(int64_t vocab, int64_t d_model) {
    wte = register_module("wte", torch::nn::Embedding(vocab, d_model));
    mlp = register_module("mlp", nn::MLP(d_model, 4 * d_model, true, 0.0));
    ln = register_module("ln", nn::LayerNorm(d_model, true));
    nn::init_gpt2(*this);
  }
  ModelOutput forward(const torch::Tensor& tokens, DecodeState*) override {
    auto x = wte(tokens);                                    // (B, T, C)
    x = x + mlp(ln(x));
    return {torch::nn::functional::linear(x, wte->weight), {}};  // (B, T, V)
  }
  torch::nn::Embedding wte{nullptr};
  nn::MLP mlp{nullptr};
  nn::LayerNorm ln{nullptr};
};

class @CLASS@Plugin : public ArchPlugin {
 public:
  std::string name() const override { return "@NAME@"; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "@NAME@: embedding + MLP (scaffold)"; }
  std::vector<ParamSpec> params() const override { return {int_param("d_model", 64, "embedding width", 1)}; }
  std::map<std::string, Value> tiny_config() const override { return {{"d_model", int64_t{8}}}; }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    return std::make_shared<@CLASS@Model>(ctx.vocab_size, p.i("d_model"));
  }
};

}  // namespace

LMGRID_PLUGIN(@CLASS@Plugin)
)TPL";

const char* kTokenizer = R"TPL(// tokenizer/@NAME@: a starting point: one token per byte (vocabulary 256).
#include <lmgrid/plugin.hpp>

namespace {

using namespace lmgrid;

class @CLASS@Tokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(const std::string& text) const override {
    std::vector<int64_t> ids;
    for (unsigned char c : text) ids.push_back(c);
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const override {
    std::string s;
    for (int64_t id : ids) s += static_cast<char>(id);
    return s;
  }
  int64_t vocab_size() const override { return 256; }
  std::string save() const override { return ""; }
  void load(const std::string&) override {}
};

class @CLASS@Plugin : public TokenizerPlugin {
 public:
  std::string name() const override { return "@NAME@"; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "@NAME@: bytes (scaffold)"; }
  std::vector<ParamSpec> params() const override { return {}; }
  std::shared_ptr<Tokenizer> create(const Params&) const override { return std::make_shared<@CLASS@Tokenizer>(); }
};

}  // namespace

LMGRID_PLUGIN(@CLASS@Plugin)
)TPL";

const char* kData = R"TPL(// data/@NAME@: a starting point: a synthetic copy task. Each sequence is a random prefix
// repeated once; only the second half is scored (loss_mask). Deterministic in (seed, index).
#include <lmgrid/plugin.hpp>

namespace {

using namespace lmgrid;

class @CLASS@Dataset : public Dataset {
 public:
  @CLASS@Dataset(int64_t seq_len, int64_t vocab, uint64_t seed) : T_(seq_len), V_(vocab), seed_(seed) {}
  Batch train_batch(int64_t index, int64_t B) override { return make(seed_ * 1000003 + index, B); }
  int64_t eval_batch_count(Split, int64_t) const override { return 8; }
  Batch eval_batch(Split, int64_t index, int64_t B) override { return make(0xE7A1 + index, B); }
  int64_t train_tokens() const override { return 0; }

 private:
  Batch make(uint64_t s, int64_t B) {
    auto gen = at::detail::createCPUGenerator(s);
    int64_t half = T_ / 2 + 1;  // two copies cover the T+1 tokens of inputs and targets
    auto prefix = torch::randint(0, V_, {B, half}, gen, torch::kLong);
    auto seq = torch::cat({prefix, prefix}, 1).narrow(1, 0, T_ + 1);
    auto mask = torch::zeros({B, T_});
    mask.narrow(1, half - 1, T_ - half + 1).fill_(1.0);
    return {seq.narrow(1, 0, T_).contiguous(), seq.narrow(1, 1, T_).contiguous(), mask};
  }
  int64_t T_, V_;
  uint64_t seed_;
};

class @CLASS@Plugin : public DataPlugin {
 public:
  std::string name() const override { return "@NAME@"; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "@NAME@: synthetic copy task (scaffold)"; }
  std::vector<ParamSpec> params() const override { return {int_param("seq_len", 32, "tokens per sequence", 2)}; }
  int64_t seq_len(const Params& p) const override { return p.i("seq_len"); }
  std::shared_ptr<Dataset> create(const Params& p, const DataContext& ctx) const override {
    // A tokenizer that learns its vocabulary (char, BPE) is fitted on the data's alphabet.
    ctx.tokenizer->fit("abcdefghijklmnopqrstuvwxyz");
    return std::make_shared<@CLASS@Dataset>(p.i("seq_len"), ctx.tokenizer->vocab_size(), ctx.seed);
  }
};

}  // namespace

LMGRID_PLUGIN(@CLASS@Plugin)
)TPL";

const char* kOptim = R"TPL(// optim/@NAME@: a starting point: SGD with momentum (LibTorch's torch::optim::SGD).
#include <lmgrid/plugin.hpp>

namespace {

using namespace lmgrid;

class @CLASS@Optimizer : public Optimizer {
 public:
  @CLASS@Optimizer(const Params& p, const std::vector<NamedParameter>& params) : lr_(p.f("lr")) {
    std::vector<torch::Tensor> ts;
    for (const auto& np : params) ts.push_back(np.tensor);
    opt_ = std::make_unique<torch::optim::SGD>(ts, torch::optim::SGDOptions(lr_).momentum(p.f("momentum")));
  }
  void zero_grad() override { opt_->zero_grad(); }
  void step() override { opt_->step(); }
  void set_lr(double lr) override {
    for (auto& g : opt_->param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
  }
  double base_lr() const override { return lr_; }
  void save(torch::serialize::OutputArchive& a) const override { opt_->save(a); }
  void load(torch::serialize::InputArchive& a) override { opt_->load(a); }

 private:
  double lr_;
  std::unique_ptr<torch::optim::SGD> opt_;
};

class @CLASS@Plugin : public OptimPlugin {
 public:
  std::string name() const override { return "@NAME@"; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "@NAME@: SGD with momentum (scaffold)"; }
  std::vector<ParamSpec> params() const override {
    return {real_param("lr", 0.1, "learning rate", 0.0), real_param("momentum", 0.9, "momentum", 0.0, 1.0)};
  }
  std::shared_ptr<Optimizer> create(const Params& p, const std::vector<NamedParameter>& params) const override {
    return std::make_shared<@CLASS@Optimizer>(p, params);
  }
};

}  // namespace

LMGRID_PLUGIN(@CLASS@Plugin)
)TPL";

const char* kReadme = R"TPL(# @KIND@/@NAME@

Scaffolded by `lmgrid new-plugin @KIND@ @NAME@`.

Build against an installed lmgrid SDK and make the host find it:

    cmake -S . -B build -DCMAKE_PREFIX_PATH=<sdk prefix>
    cmake --build build
    export LMGRID_PLUGIN_PATH=$PWD/build:$LMGRID_PLUGIN_PATH
    lmgrid plugins show @NAME@

Then name it in an experiment (`[@SECTION@] plugin = "@NAME@"`). The contract is documented in
`lmgrid/plugin.hpp`; docs/plugins.md in the lmgrid repository walks through it.
)TPL";

std::string fill(std::string t, const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) {
    std::string key = "@" + k + "@";
    for (size_t p = t.find(key); p != std::string::npos; p = t.find(key, p + v.size())) t.replace(p, key.size(), v);
  }
  return t;
}

}  // namespace

void add_new_plugin(CLI::App& app) {
  struct Opt {
    std::string kind, name, dir;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd = app.add_subcommand("new-plugin", "Scaffold an out-of-tree plugin project");
  cmd->add_option("kind", opt->kind, "arch, data, tokenizer or optim")->required();
  cmd->add_option("name", opt->name, "plugin name ([a-z][a-z0-9_]*)")->required();
  cmd->add_option("--dir", opt->dir, "folder to create (must not exist or be empty)")->required();
  cmd->callback([opt] {
    std::map<std::string, const char*> sources{
        {"arch", kArch}, {"tokenizer", kTokenizer}, {"data", kData}, {"optim", kOptim}};
    std::map<std::string, std::string> sections{
        {"arch", "model"}, {"tokenizer", "tokenizer"}, {"data", "data"}, {"optim", "optim"}};
    if (!sources.count(opt->kind))
      throw UserError("kind must be arch, data, tokenizer or optim (got '" + opt->kind + "')");
    if (!std::regex_match(opt->name, std::regex("[a-z][a-z0-9_]*")))
      throw UserError("plugin name '" + opt->name + "' must match [a-z][a-z0-9_]*");
    namespace fs = std::filesystem;
    fs::path dir(opt->dir);
    if (fs::exists(dir) && !fs::is_empty(dir)) throw UserError("--dir " + dir.string() + " exists and is not empty");
    std::string cls;
    bool up = true;
    for (char c : opt->name) {
      if (c == '_') {
        up = true;
        continue;
      }
      cls += up ? static_cast<char>(std::toupper(c)) : c;
      up = false;
    }
    std::map<std::string, std::string> vars{
        {"NAME", opt->name}, {"KIND", opt->kind}, {"CLASS", cls}, {"SECTION", sections[opt->kind]}};
    fs::create_directories(dir);
    std::ofstream(dir / "CMakeLists.txt") << fill(kCMake, vars);
    std::ofstream(dir / (opt->name + ".cpp")) << fill(sources[opt->kind], vars);
    std::ofstream(dir / "README.md") << fill(kReadme, vars);
    std::printf("created %s/{CMakeLists.txt,%s.cpp,README.md}\n", dir.c_str(), opt->name.c_str());
  });
}

}  // namespace lmgrid::cli
