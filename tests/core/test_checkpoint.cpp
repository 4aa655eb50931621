// Checkpoints: exact round trip (model, RNG, meta); corruption and truncation are detected.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include <lmgrid/train/checkpoint.hpp>
#include <lmgrid/base/errors.hpp>

using namespace lmgrid;
namespace fs = std::filesystem;

namespace {
struct Tiny : Model {
  Tiny() { lin = register_module("lin", torch::nn::Linear(4, 3)); }
  ModelOutput forward(const torch::Tensor& x, DecodeState*) override { return {lin(x.to(torch::kFloat32)), {}}; }
  torch::nn::Linear lin{nullptr};
};
}  // namespace

TEST_CASE("checkpoint round trip restores weights, RNG and meta", "[unit]") {
  fs::path file = fs::temp_directory_path() / ("lmgrid-ck-" + std::to_string(getpid()) + ".lmck");
  torch::manual_seed(5);
  auto a = std::make_shared<Tiny>();
  CheckpointMeta meta;
  meta.step = 42, meta.tokens = 4200, meta.data_cursor = 43, meta.elapsed_s = 1.5, meta.best_val = 2.25;
  meta.evals_since_best = 3, meta.train_time_s = 1.25, meta.last_train_loss = 2.5, meta.last_val = 2.375;
  meta.config_json = "{\"x\":1}";
  meta.tokenizer_state = "abc\n";
  save_checkpoint(file, meta, *a, nullptr);
  auto r1 = torch::rand({3});  // RNG continues from the saved state

  torch::manual_seed(99);
  auto b = std::make_shared<Tiny>();
  CHECK_FALSE(torch::equal(a->lin->weight, b->lin->weight));
  auto got = load_checkpoint(file, *b, nullptr, true);
  CHECK(torch::equal(a->lin->weight, b->lin->weight));
  CHECK(torch::equal(a->lin->bias, b->lin->bias));
  CHECK(torch::equal(torch::rand({3}), r1));
  CHECK(got.step == 42);
  CHECK(got.tokens == 4200);
  CHECK(got.elapsed_s == 1.5);
  CHECK(got.data_cursor == 43);
  CHECK(got.best_val == 2.25);
  CHECK(got.evals_since_best == 3);
  CHECK(got.train_time_s == 1.25);
  CHECK(got.last_train_loss == 2.5);
  CHECK(got.last_val == 2.375);
  CHECK(got.tokenizer_state == "abc\n");
  CHECK(read_checkpoint_meta(file).config_json == "{\"x\":1}");
  fs::remove(file);
}

TEST_CASE("a checkpoint without a val loss keeps it NaN", "[unit]") {
  fs::path file = fs::temp_directory_path() / "nan.lmck";
  auto a = std::make_shared<Tiny>();
  CheckpointMeta meta;  // best_val, last_train_loss, last_val default to NaN
  meta.best_val = NAN;
  meta.config_json = "{}";
  save_checkpoint(file, meta, *a, nullptr);
  auto got = read_checkpoint_meta(file);
  CHECK(std::isnan(got.best_val));
  CHECK(std::isnan(got.last_train_loss));
  CHECK(std::isnan(got.last_val));
  CHECK(got.train_time_s == 0);
}

TEST_CASE("a corrupted or truncated checkpoint is never loaded", "[unit]") {
  fs::path file = fs::temp_directory_path() / ("lmgrid-ck2-" + std::to_string(getpid()) + ".lmck");
  auto a = std::make_shared<Tiny>();
  CheckpointMeta meta;
  meta.config_json = "{}";
  save_checkpoint(file, meta, *a, nullptr);
  auto size = fs::file_size(file);
  {  // flip one byte near the end of the payload
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(size - 10));
    char c;
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x5A);
    f.seekp(static_cast<std::streamoff>(size - 10));
    f.write(&c, 1);
  }
  auto b = std::make_shared<Tiny>();
  auto before = b->lin->weight.clone();
  CHECK_THROWS_WITH(load_checkpoint(file, *b, nullptr, false), Catch::Contains("corrupted"));
  CHECK(torch::equal(before, b->lin->weight));  // nothing was loaded
  fs::resize_file(file, size - 100);
  CHECK_THROWS_WITH(load_checkpoint(file, *b, nullptr, false), Catch::Contains("truncated"));
  { std::ofstream(file) << "garbage"; }
  CHECK_THROWS_AS(read_checkpoint_meta(file), CheckpointError);
  fs::remove(file);
}

// A checkpoint file with this header JSON (magic, version 1, length) and `payload` after it.
static void write_with_header(const fs::path& file, const std::string& header, const std::string& payload = "",
                              uint64_t header_length = UINT64_MAX) {
  std::ofstream f(file, std::ios::binary | std::ios::trunc);
  const uint32_t version = kCheckpointVersion;
  const uint64_t n = header_length == UINT64_MAX ? header.size() : header_length;
  f.write("LMGRIDCK", 8);
  f.write(reinterpret_cast<const char*>(&version), sizeof(version));
  f.write(reinterpret_cast<const char*>(&n), sizeof(n));
  f << header << payload;
}

// f() throws CheckpointError (any other exception fails the test) with `message` in it.
template <class F>
static void refused_with(const std::string& message, F f) {
  try {
    f();
    FAIL("accepted; expected a CheckpointError with: " << message);
  } catch (const CheckpointError& e) {
    CHECK_THAT(e.what(), Catch::Contains(message));
  }
}

TEST_CASE("a checkpoint header with missing, mistyped or impossible fields is a CheckpointError", "[unit]") {
  // Found by tests/fuzz/fuzz_checkpoint: a header without "tokens" threw json's out_of_range,
  // which the trainer's fallback to an older checkpoint (it catches CheckpointError) missed; a
  // step of 1e30 was converted to int64 (undefined behaviour); a header length past the end of
  // the file allocated that much before failing.
  fs::path file = fs::temp_directory_path() / ("lmgrid-ck3-" + std::to_string(getpid()) + ".lmck");
  const std::string good = R"({"step":2,"tokens":64,"elapsed_s":0.5,"data_cursor":2,"best_val":null,)"
                           R"("config":"{}","tokenizer_state":"ab","payload_size":0,"payload_sha256":""})";
  write_with_header(file, good);
  CHECK(read_checkpoint_meta(file).step == 2);
  struct Case {
    std::string header, message;
  };
  for (
      const Case& c : std::vector<Case>{
          {R"({"step":2,"elapsed_s":0.5,"data_cursor":2,"best_val":null,"config":"{}","tokenizer_state":""})",
           "no field 'tokens'"},
          {R"({"step":1e30,"tokens":64,"elapsed_s":0.5,"data_cursor":2,"best_val":null,"config":"{}","tokenizer_state":""})",
           "'step' is not a count"},
          {R"({"step":-3,"tokens":64,"elapsed_s":0.5,"data_cursor":2,"best_val":null,"config":"{}","tokenizer_state":""})",
           "'step' is not a count"},
          {R"({"step":2,"tokens":64,"elapsed_s":"soon","data_cursor":2,"best_val":null,"config":"{}","tokenizer_state":""})",
           "'elapsed_s' is not a number"},
          {R"({"step":2,"tokens":64,"elapsed_s":0.5,"data_cursor":2,"best_val":null,"config":7,"tokenizer_state":""})",
           "no text field 'config'"},
          {R"([1, 2, 3])", "not a JSON object"},
      }) {
    INFO(c.header);
    write_with_header(file, c.header);
    refused_with(c.message, [&] { read_checkpoint_meta(file); });
  }
  write_with_header(file, good, "", uint64_t{1} << 29);  // 512 MiB said, a few bytes there
  refused_with("length is corrupt", [&] { read_checkpoint_meta(file); });
  // load_checkpoint: a payload size that is not a count is corruption too.
  write_with_header(file, R"({"step":2,"tokens":64,"elapsed_s":0.5,"data_cursor":2,"best_val":null,"config":"{}",)"
                          R"("tokenizer_state":"","payload_size":1e40,"payload_sha256":""})");
  auto m = std::make_shared<Tiny>();
  refused_with("no payload size", [&] { load_checkpoint(file, *m, nullptr, false); });
  fs::remove(file);
}
