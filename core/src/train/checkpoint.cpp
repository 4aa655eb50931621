// Checkpoint files: magic, version, JSON header with checksum, LibTorch archive payload.
#include "lmgrid/train/checkpoint.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <torch/cuda.h>

#include <cmath>
#include <optional>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"

namespace lmgrid {

using json = nlohmann::json;
namespace fs = std::filesystem;

static const char kMagic[8] = {'L', 'M', 'G', 'R', 'I', 'D', 'C', 'K'};

std::string save_checkpoint(const fs::path& file, const CheckpointMeta& meta, Model& model,
                            const Optimizer* optimizer) {
  torch::serialize::OutputArchive root;
  torch::serialize::OutputArchive model_ar;
  model.save(model_ar);
  root.write("model", model_ar);
  if (optimizer) {
    torch::serialize::OutputArchive opt_ar;
    optimizer->save(opt_ar);
    root.write("optim", opt_ar);
  }
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    root.write("rng", gen.get_state());
  }
  // Each visible GPU's generator (dropout masks drawn on the device), as "rng_cuda_<i>".
  if (torch::cuda::is_available())
    for (size_t i = 0; i < torch::cuda::device_count(); ++i) {
      auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
      std::lock_guard<std::mutex> lock(gen.mutex());
      root.write("rng_cuda_" + std::to_string(i), gen.get_state());
    }
  std::ostringstream payload_stream;
  root.save_to(payload_stream);
  std::string payload = payload_stream.str();

  json h;
  h["step"] = meta.step;
  h["tokens"] = meta.tokens;
  h["elapsed_s"] = meta.elapsed_s;
  h["data_cursor"] = meta.data_cursor;
  h["best_val"] = std::isfinite(meta.best_val) ? json(meta.best_val) : json(nullptr);
  h["evals_since_best"] = meta.evals_since_best;
  h["train_time_s"] = meta.train_time_s;
  h["last_train_loss"] = std::isfinite(meta.last_train_loss) ? json(meta.last_train_loss) : json(nullptr);
  h["last_val"] = std::isfinite(meta.last_val) ? json(meta.last_val) : json(nullptr);
  h["config"] = meta.config_json;
  h["tokenizer_state"] = meta.tokenizer_state;
  h["extra"] = meta.extra;
  h["has_optim"] = optimizer != nullptr;
  h["payload_size"] = payload.size();
  h["payload_sha256"] = sha256_hex(payload);
  std::string header = h.dump();

  std::string out(kMagic, sizeof(kMagic));
  uint32_t version = kCheckpointVersion;
  uint64_t hlen = header.size();
  out.append(reinterpret_cast<const char*>(&version), sizeof(version));
  out.append(reinterpret_cast<const char*>(&hlen), sizeof(hlen));
  out += header;
  out += payload;
  write_file_atomic(file, out);
  return sha256_hex(out);
}

namespace {
struct Parsed {
  json header;
  std::string payload;
};

Parsed parse(const fs::path& file, bool with_payload) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw CheckpointError("checkpoint not readable: " + file.string());
  char magic[8];
  uint32_t version = 0;
  uint64_t hlen = 0;
  in.read(magic, 8);
  in.read(reinterpret_cast<char*>(&version), sizeof(version));
  in.read(reinterpret_cast<char*>(&hlen), sizeof(hlen));
  if (!in || std::memcmp(magic, kMagic, 8) != 0)
    throw CheckpointError("not an lmgrid checkpoint (bad magic): " + file.string());
  if (version != kCheckpointVersion)
    throw CheckpointError(fmt::format("checkpoint {} has format version {}, this lmgrid reads {}", file.string(),
                                      version, kCheckpointVersion));
  std::error_code ec;
  const uint64_t file_size = fs::file_size(file, ec);
  // A length past the end of the file is corruption, found before a buffer of that size is made.
  if (hlen > (1u << 30) || (!ec && hlen > file_size - std::min<uint64_t>(file_size, 20)))
    throw CheckpointError(fmt::format("checkpoint header length is corrupt ({} bytes, the file has {}): {}", hlen,
                                      file_size, file.string()));
  std::string header(hlen, '\0');
  in.read(header.data(), static_cast<std::streamsize>(hlen));
  if (!in) throw CheckpointError("checkpoint truncated in its header: " + file.string());
  Parsed p;
  try {
    p.header = json::parse(header);
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint header is corrupt: " + file.string() + ": " + e.what());
  }
  if (!p.header.is_object())
    throw CheckpointError("checkpoint header is corrupt (not a JSON object): " + file.string());
  if (with_payload) {
    std::ostringstream ss;
    ss << in.rdbuf();
    p.payload = ss.str();
    uint64_t size = 0;
    std::string sha;
    auto ps = p.header.find("payload_size");
    auto sh = p.header.find("payload_sha256");
    if (ps == p.header.end() || !ps->is_number_unsigned() || sh == p.header.end() || !sh->is_string())
      throw CheckpointError("checkpoint header is corrupt: " + file.string() + ": no payload size or sha256");
    size = ps->get<uint64_t>();
    sha = sh->get<std::string>();
    if (p.payload.size() != size)
      throw CheckpointError(fmt::format("checkpoint {} is truncated: payload has {} bytes, header says {}",
                                        file.string(), p.payload.size(), size));
    if (sha256_hex(p.payload) != sha)
      throw CheckpointError("checkpoint " + file.string() + " is corrupted: payload sha256 does not match its header");
  }
  return p;
}

// The header's fields; a missing field, a wrong type or a negative count is corruption
// (CheckpointError, which the trainer's fallback to an older checkpoint catches). Types are
// checked before conversion: json's get<int64_t>() of 1e30 is undefined behaviour.
CheckpointMeta meta_of(const json& h, const fs::path& file) {
  auto corrupt = [&](const std::string& what) {
    return CheckpointError("checkpoint header is corrupt: " + file.string() + ": " + what);
  };
  auto count = [&](const char* key, std::optional<int64_t> absent) -> int64_t {
    auto it = h.find(key);
    if (it == h.end() && absent) return *absent;
    if (it == h.end()) throw corrupt(std::string("no field '") + key + "'");
    if (!it->is_number_integer() || it->get<int64_t>() < 0)
      throw corrupt(std::string("'") + key + "' is not a count: " + it->dump());
    return it->get<int64_t>();
  };
  auto real = [&](const char* key, std::optional<double> absent) -> double {
    auto it = h.find(key);
    if (it == h.end() && absent) return *absent;
    if (it == h.end()) throw corrupt(std::string("no field '") + key + "'");
    if (it->is_null()) return NAN;
    if (!it->is_number()) throw corrupt(std::string("'") + key + "' is not a number: " + it->dump());
    return it->get<double>();
  };
  auto text = [&](const char* key) -> std::string {
    auto it = h.find(key);
    if (it == h.end() || !it->is_string()) throw corrupt(std::string("no text field '") + key + "'");
    return it->get<std::string>();
  };
  CheckpointMeta m;
  m.step = count("step", std::nullopt);
  m.tokens = count("tokens", std::nullopt);
  m.elapsed_s = real("elapsed_s", std::nullopt);
  m.data_cursor = count("data_cursor", std::nullopt);
  m.best_val = real("best_val", std::nullopt);
  m.evals_since_best = count("evals_since_best", 0);
  m.train_time_s = real("train_time_s", 0.0);
  m.last_train_loss = real("last_train_loss", NAN);
  m.last_val = real("last_val", NAN);
  m.config_json = text("config");
  m.tokenizer_state = text("tokenizer_state");
  auto extra = h.find("extra");
  m.extra = extra == h.end() ? json::object() : *extra;
  return m;
}
}  // namespace

CheckpointMeta read_checkpoint_meta(const fs::path& file) { return meta_of(parse(file, false).header, file); }

CheckpointMeta load_checkpoint(const fs::path& file, Model& model, Optimizer* optimizer, bool restore_rng,
                               const torch::Device& device) {
  Parsed p = parse(file, true);
  CheckpointMeta meta = meta_of(p.header, file);
  std::istringstream is(p.payload);
  torch::serialize::InputArchive root;
  try {
    root.load_from(is, device);  // tensors land where the model trains (optimizer state too)
    torch::serialize::InputArchive model_ar;
    root.read("model", model_ar);
    model.load(model_ar);
    if (optimizer) {
      if (!p.header.value("has_optim", false))
        throw CheckpointError("checkpoint has no optimizer state: " + file.string());
      torch::serialize::InputArchive opt_ar;
      root.read("optim", opt_ar);
      optimizer->load(opt_ar);
    }
    if (restore_rng) {
      torch::Tensor state;
      root.read("rng", state);
      {
        auto gen = at::detail::getDefaultCPUGenerator();
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(state.cpu());
      }
      // GPU generators saved by a GPU run, restored where that GPU is visible (a run moved to
      // the CPU draws its dropout masks from the CPU generator alone).
      if (torch::cuda::is_available())
        for (size_t i = 0; i < torch::cuda::device_count(); ++i) {
          torch::Tensor cuda_state;
          if (!root.try_read("rng_cuda_" + std::to_string(i), cuda_state)) continue;
          auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_state(cuda_state.cpu());
        }
    }
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw CheckpointError("checkpoint " + file.string() + " does not match the model: " + e.what());
  }
  return meta;
}

}  // namespace lmgrid
