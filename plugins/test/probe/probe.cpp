// arch/probe: a test-only plugin (built into build/test-plugins, never installed). A bigram model
// that fails on request, so tests can check how the host isolates plugin failures:
//   fail = "throw_create" | "throw_forward" | "segv_forward" | "nan_loss", from step fail_at.
// Built twice: normally, and with LMGRID_PROBE_BAD_ABI as arch/probe_badabi whose build stamp
// claims another ABI version (the host must refuse it before calling anything).
#include <atomic>
#include <csignal>
#include <stdexcept>

#include <lmgrid/plugin/plugin.hpp>

namespace {

using namespace lmgrid;

#ifdef LMGRID_PROBE_BAD_ABI
const char* kName = "probe_badabi";
#else
const char* kName = "probe";
#endif

class Probe : public Model {
 public:
  Probe(int64_t vocab, int64_t d, std::string fail, int64_t fail_at) : fail_(std::move(fail)), fail_at_(fail_at) {
    emb = register_module("emb", torch::nn::Embedding(vocab, d));
    head = register_module("head", torch::nn::Linear(d, vocab));
  }
  ModelOutput forward(const torch::Tensor& idx, DecodeState*) override {
    // Counted atomically: under the batch split (LMGRID_CPU_SPLIT) a step's parts call forward
    // from two threads at once, and each call counts.
    const int64_t calls = is_training() ? ++calls_ : calls_.load();
    if (calls >= fail_at_) {
      if (fail_ == "throw_forward")
        throw std::runtime_error("probe failure requested at forward " + std::to_string(calls));
      if (fail_ == "segv_forward") {
        volatile int* p = nullptr;
        *p = 42;  // deliberate crash
      }
    }
    auto logits = head(emb(idx));
    if (fail_ == "nan_loss" && calls >= fail_at_) logits = logits * std::numeric_limits<float>::quiet_NaN();
    return {logits, {}};
  }
  torch::nn::Embedding emb{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  std::string fail_;
  int64_t fail_at_;
  std::atomic<int64_t> calls_{0};
};

class ProbePlugin : public ArchPlugin {
 public:
  std::string name() const override { return kName; }
  std::string version() const override { return "0.1"; }
  std::string summary() const override { return "test plugin: bigram model that fails on request"; }
  std::vector<ParamSpec> params() const override {
    return {int_param("d_model", 8, "embedding width", 1),
            string_param("fail", "none", "failure to inject",
                         {"none", "throw_create", "throw_forward", "segv_forward", "nan_loss"}),
            int_param("fail_at", 1, "training forward call (1-based) from which the failure happens", 1)};
  }
  std::shared_ptr<Model> create(const Params& p, const ModelContext& ctx) const override {
    if (p.s("fail") == "throw_create") throw std::runtime_error("probe failure requested at create");
    return std::make_shared<Probe>(ctx.vocab_size, p.i("d_model"), p.s("fail"), p.i("fail_at"));
  }
};

}  // namespace

#ifdef LMGRID_PROBE_BAD_ABI
namespace lmgrid_plugin_export {
::lmgrid::Plugin* create_plugin() { return new ProbePlugin(); }
const ::lmgrid::PluginEntry* plugin_entry() {
  static ::lmgrid::PluginEntry entry{::lmgrid::current_build_stamp(), &create_plugin};
  entry.stamp.abi_version = ::lmgrid::kPluginAbiVersion + 41;  // pretend a future ABI
  return &entry;
}
}  // namespace lmgrid_plugin_export
BOOST_DLL_ALIAS(lmgrid_plugin_export::plugin_entry, lmgrid_plugin_entry)
#else
LMGRID_PLUGIN(ProbePlugin)
#endif
