// llm.c token shards (lmgrid/data/shards.hpp): header parsing of every malformed case, the
// writer's round trip in both formats, streams across shard boundaries; and data/shards'
// windows: deterministic in (seed, index), fixed evaluation windows, the tokenizer check.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <random>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/data/shards.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "lmgrid-shards-XXXXXX").string();
    path = mkdtemp(t.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

// A shard written byte by byte: header fields, then `body` bytes.
void write_raw(const fs::path& f, int32_t magic, int32_t version, int32_t ntok, const std::string& body) {
  int32_t h[256] = {};
  h[0] = magic, h[1] = version, h[2] = ntok;
  std::ofstream o(f, std::ios::binary);
  o.write(reinterpret_cast<const char*>(h), sizeof(h));
  o << body;
}

std::string error_of(const fs::path& f) {
  try {
    MappedShard s(f);
  } catch (const UserError& e) {
    return e.what();
  }
  return "";
}

std::vector<int64_t> ramp(int64_t n, int64_t mod, int64_t offset = 0) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = (i * 7 + offset) % mod;
  return v;
}

}  // namespace

TEST_CASE("shards: writer round trip in both formats", "[unit][shards]") {
  TempDir d;
  auto small = ramp(1000, 65536), wide = ramp(777, 70000);
  wide[3] = 65536;
  CHECK(write_shard(d.path / "a.bin", small).version == 1);  // every id < 65536: uint16
  CHECK(write_shard(d.path / "b.bin", wide).version == 7);   // one id beyond: uint32
  CHECK(write_shard(d.path / "c.bin", small, ShardFormat::v7).magic == kShardMagicV7);
  CHECK(fs::file_size(d.path / "a.bin") == 1024 + 2 * 1000);
  CHECK(fs::file_size(d.path / "b.bin") == 1024 + 4 * 777);
  for (const auto& [name, ids] :
       std::vector<std::pair<std::string, std::vector<int64_t>>>{{"a.bin", small}, {"b.bin", wide}, {"c.bin", small}}) {
    MappedShard s(d.path / name);
    REQUIRE(s.size() == static_cast<int64_t>(ids.size()));
    std::vector<int64_t> back(ids.size());
    s.copy(0, s.size(), back.data());
    CHECK(back == ids);
    CHECK(s.max_token() == *std::max_element(ids.begin(), ids.end()));
  }
  MappedShard a(d.path / "a.bin");
  CHECK(a.tokens16()[5] == 35);
  CHECK_THROWS_AS(a.tokens32(), std::logic_error);
  CHECK(read_shard_header(d.path / "b.bin").ntok == 777);
  // header[3..255] are zero; no temporary file is left beside the shards.
  std::ifstream in(d.path / "a.bin", std::ios::binary);
  int32_t h[256];
  in.read(reinterpret_cast<char*>(h), sizeof(h));
  CHECK(std::all_of(h + 3, h + 256, [](int32_t x) { return x == 0; }));
  CHECK(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()) == 3);
  CHECK_THROWS_AS(write_shard(d.path / "x.bin", wide, ShardFormat::v1), std::invalid_argument);
  CHECK_FALSE(fs::exists(d.path / "x.bin"));
  // A writer dropped before commit() leaves nothing.
  {
    ShardWriter w(d.path / "y.bin", ShardFormat::v1);
    w.append(small);
  }
  CHECK(std::distance(fs::directory_iterator(d.path), fs::directory_iterator()) == 3);
}

TEST_CASE("shards: every malformed header is a UserError naming the file and the field", "[unit][shards]") {
  TempDir d;
  auto f = d.path / "s.bin";
  std::string four(8, '\0');  // 4 uint16 or 2 uint32 tokens
  write_raw(f, 12345, 1, 4, four);
  CHECK_THAT(error_of(f), Catch::Contains(f.string() + ": header[0] (magic) is 12345, expected 20240520 or 20240801"));
  write_raw(f, kShardMagicV1, 3, 4, four);
  CHECK_THAT(error_of(f), Catch::Contains("header[1] (version) is 3, expected 1"));
  write_raw(f, kShardMagicV1, 7, 2, four);
  CHECK_THAT(error_of(f), Catch::Contains("header[1] (version) is 7, but magic 20240520 goes with version 1"));
  write_raw(f, kShardMagicV7, 1, 4, four);
  CHECK_THAT(error_of(f), Catch::Contains("header[1] (version) is 1, but magic 20240801 goes with version 7"));
  write_raw(f, kShardMagicV1, 1, 5, four);
  CHECK_THAT(error_of(f),
             Catch::Contains("header[2] (ntok) is 5, but the file holds 8 bytes after the header: 4 tokens"));
  write_raw(f, kShardMagicV7, 7, 2, four + "x");
  CHECK_THAT(error_of(f), Catch::Contains("header[2] (ntok) is 2") && Catch::Contains("1 stray bytes"));
  write_raw(f, kShardMagicV1, 1, -1, "");
  CHECK_THAT(error_of(f), Catch::Contains("header[2] (ntok) is -1"));
  std::ofstream(f, std::ios::binary) << std::string(100, '\0');
  CHECK_THAT(error_of(f), Catch::Contains(f.string() + ": the file is 100 bytes, shorter than the 1024-byte header"));
  std::ofstream(f, std::ios::binary).close();
  CHECK_THAT(error_of(f), Catch::Contains("the file is 0 bytes"));
  CHECK_THAT(error_of(d.path / "missing.bin"), Catch::Contains("missing.bin: cannot open the shard"));
  write_raw(f, kShardMagicV1, 1, 0, "");
  CHECK(MappedShard(f).size() == 0);

  std::vector<int64_t> ids = ramp(100, 50);
  ids[42] = 50257;
  write_shard(f, ids);
  MappedShard s(f);
  CHECK_NOTHROW(s.check_vocab(50258));
  try {
    s.check_vocab(50257);
    FAIL("no error");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains(f.string() + ": token 42 is 50257, not below the vocabulary size 50257"));
  }
}

TEST_CASE("shards: a stream reads across shard boundaries; globs sort", "[unit][shards]") {
  TempDir d;
  std::vector<int64_t> all = ramp(250, 1000);
  write_shard(d.path / "t_000002.bin", {all.begin() + 100, all.begin() + 103}, ShardFormat::v7);
  write_shard(d.path / "t_000001.bin", {all.begin(), all.begin() + 100});
  write_shard(d.path / "t_000003.bin", {all.begin() + 103, all.end()});
  auto files = expand_shard_glob((d.path / "t_*.bin").string());
  REQUIRE(files.size() == 3);
  CHECK(files[0].filename() == "t_000001.bin");
  ShardStream s(files);
  CHECK(s.size() == 250);
  for (int64_t start : {0, 95, 99, 100, 101, 102, 103, 200}) {
    std::vector<int64_t> got(40);
    int64_t n = std::min<int64_t>(40, 250 - start);
    s.copy(start, n, got.data());
    CHECK(std::equal(got.begin(), got.begin() + n, all.begin() + start));
  }
  CHECK_THROWS_AS(s.copy(240, 11, std::vector<int64_t>(11).data()), std::out_of_range);
  try {
    expand_shard_glob((d.path / "nope_*.bin").string());
    FAIL("no error");
  } catch (const UserError& e) {
    CHECK_THAT(e.what(), Catch::Contains("no file matches " + (d.path / "nope_*.bin").string()));
  }
}

TEST_CASE("data/shards: windows are deterministic in (seed, index) and come from the stream", "[unit][shards]") {
  TempDir d;
  std::vector<int64_t> train = ramp(5000, 251), val = ramp(700, 251, 3);
  write_shard(d.path / "x_train_000001.bin", {train.begin(), train.begin() + 3000});
  write_shard(d.path / "x_train_000002.bin", {train.begin() + 3000, train.end()}, ShardFormat::v7);
  write_shard(d.path / "x_val_000000.bin", val);
  const auto& reg = test::built_plugins();
  const auto& dp = static_cast<const DataPlugin&>(*reg.get(PluginKind::data, "shards").plugin);
  const auto& tp = static_cast<const TokenizerPlugin&>(*reg.get(PluginKind::tokenizer, "byte").plugin);
  auto tok = tp.create(validate_params(tp.params(), {}, "byte"));
  Params p = validate_params(dp.params(),
                             {{"train", (d.path / "x_train_*.bin").string()},
                              {"val", (d.path / "x_val_*.bin").string()},
                              {"seq_len", int64_t{32}},
                              {"vocab_size", int64_t{256}}},
                             "[data]");
  REQUIRE_NOTHROW(dp.check(p));
  auto a = dp.create(p, {tok, 1}), b = dp.create(p, {tok, 1}), c = dp.create(p, {tok, 2});
  CHECK(a->train_tokens() == 5000);
  Batch x = a->train_batch(7, 4);
  REQUIRE(x.inputs.sizes() == torch::IntArrayRef({4, 32}));
  CHECK(torch::equal(x.inputs, b->train_batch(7, 4).inputs));
  CHECK_FALSE(torch::equal(x.inputs, c->train_batch(7, 4).inputs));
  CHECK_FALSE(torch::equal(x.inputs, a->train_batch(8, 4).inputs));
  // Each window is seq_len + 1 consecutive stream tokens: targets are the inputs shifted by one,
  // and the window occurs in the train stream (the ramp makes a window's start unique mod 251).
  CHECK(torch::equal(x.inputs.narrow(1, 1, 31), x.targets.narrow(1, 0, 31)));
  for (int64_t r = 0; r < 4; ++r) {
    auto row = x.inputs[r];
    bool found = false;
    for (size_t s = 0; s + 33 <= train.size() && !found; ++s) {
      found = true;
      for (int64_t t = 0; t < 32 && found; ++t) found = train[s + static_cast<size_t>(t)] == row[t].item<int64_t>();
      found = found && train[s + 32] == x.targets[r][31].item<int64_t>();
    }
    CHECK(found);
  }
  // Evaluation: (700 - 1) / 32 = 21 windows; batch i holds windows i, i + count, ...
  CHECK(a->eval_batch_count(Split::val, 1) == 21);
  CHECK(a->eval_batch_count(Split::val, 4) == 5);
  CHECK(a->eval_batch_count(Split::test, 1) == 0);
  Batch e = a->eval_batch(Split::val, 1, 4);
  CHECK(torch::equal(e.inputs, c->eval_batch(Split::val, 1, 4).inputs));
  CHECK(e.inputs[2][0].item<int64_t>() == val[(1 + 2 * 5) * 32]);
  CHECK(e.targets[2][31].item<int64_t>() == val[(1 + 2 * 5) * 32 + 32]);
  CHECK_THROWS_AS(a->eval_batch(Split::val, 5, 4), std::out_of_range);

  // Ids beyond vocab_size fail check(); a tokenizer smaller than the shards' vocabulary fails create().
  Params big = p;
  big.set("vocab_size", int64_t{200});
  CHECK_THROWS_WITH(dp.check(big), Catch::Contains("train shard " + (d.path / "x_train_000001.bin").string() +
                                                   ": token 29 is 203, not below the vocabulary size 200"));
  Params wide = p;
  wide.set("vocab_size", int64_t{300});
  CHECK_THROWS_WITH(dp.create(wide, {tok, 1}), Catch::Contains("the tokenizer has 256 ids"));
  Params none = p;
  none.set("vocab_size", int64_t{0});
  CHECK_THROWS_WITH(dp.check(none), Catch::Contains("no tokenizer.json"));
  Params missing = p;
  missing.set("val", (d.path / "y_val_*.bin").string());
  CHECK_THROWS_WITH(dp.check(missing), Catch::StartsWith("val = ") && Catch::Contains("no file matches"));
}
