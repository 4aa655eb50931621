// tokenizer/sentencepiece: the interface between the plugin and sentencepiece_shim.so, the one
// object that links libsentencepiece. Why a separate object: Debian's libsentencepiece carries
// its own protobuf-lite (3.14) whose symbols collide with the system libprotobuf (3.21) that
// LibTorch brings; in a process that links LibTorch directly (the test binary, benchmarks) the
// library's protobuf calls would bind to 3.21 and abort at load. The plugin therefore dlopens the
// shim with RTLD_DEEPBIND, so libsentencepiece binds to its own protobuf first.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lmgrid::spm {

// A loaded model. Methods return "" or an error text.
class Processor {
 public:
  virtual ~Processor() = default;
  virtual std::string encode(const std::string& text, std::vector<int>& ids) const = 0;
  virtual std::string decode(const std::vector<int>& ids, std::string& text) const = 0;
  virtual int size() const = 0;
  virtual int bos_id() const = 0;  // -1 when the model has none
  virtual int eos_id() const = 0;
};

// Exported by the shim (extern "C", resolved with dlsym):
//   Processor* lmgrid_spm_load(const std::string& serialized_model, std::string& error);
//   bool lmgrid_spm_train(const std::vector<std::pair<std::string, std::string>>& args,
//                         const std::string& text, std::string& serialized_model, std::string& error);
// Training reads `text` one sentence per line (empty lines skipped), as spm_train reads a file.
using LoadFn = Processor* (*)(const std::string&, std::string&);
using TrainFn = bool (*)(const std::vector<std::pair<std::string, std::string>>&, const std::string&, std::string&,
                         std::string&);

}  // namespace lmgrid::spm
