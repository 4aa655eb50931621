// libFuzzer target: the checkpoint reader (core/src/train/checkpoint.cpp), on whole files.
// Input: a checkpoint file's bytes ("LMGRIDCK" | u32 version | u64 header length | header JSON |
// payload). Contract: read_checkpoint_meta returns the header's fields or throws CheckpointError,
// the one exception the trainer's fallback to an older checkpoint catches; it never allocates
// more than the file holds.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/train/checkpoint.hpp>

#include "fuzz_support.hpp"

static std::filesystem::path scratch_file() {
  static const std::filesystem::path p =
      std::filesystem::temp_directory_path() / ("lmgrid-fuzz-ckpt-" + std::to_string(getpid()) + ".lmck");
  return p;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace lmgrid;
  const auto file = scratch_file();
  {
    std::FILE* f = std::fopen(file.c_str(), "wb");
    if (!f) fuzz::contract_broken("cannot write the scratch file " + file.string());
    if (size && std::fwrite(data, 1, size, f) != size) fuzz::contract_broken("short write to " + file.string());
    std::fclose(f);
  }
  try {
    CheckpointMeta m = read_checkpoint_meta(file);
    if (m.step < 0 || m.tokens < 0 || m.data_cursor < 0)
      fuzz::contract_broken("accepted a checkpoint with a negative step, token count or data cursor");
  } catch (const CheckpointError&) {
  } catch (const std::exception& e) {
    fuzz::contract_broken("read_checkpoint_meta threw " + fuzz::describe(e));
  }
  return 0;
}
