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
