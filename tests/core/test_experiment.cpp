// Grid expansion, overrides, validation errors with file:line:col, canonical hashing.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/grid/experiment.hpp>
#include <lmgrid/plugin/registry.hpp>

#include "../support.hpp"

using namespace lmgrid;

static const Registry& registry() {
  static Registry r({LMGRID_PLUGIN_DIR, LMGRID_TEST_PLUGIN_DIR});
  return r;
}

static const char* kBase = R"(
[experiment]
name = "t"
seeds = [1, 2, 3]
[data]
plugin = "text"
source = "tiny_shakespeare"
[tokenizer]
plugin = "char"
[model]
plugin = "gpt"
n_layer = 2
[optim]
plugin = "adamw"
[train]
steps = 10
)";

static Experiment load(const std::string& extra, std::vector<std::string> sets = {}) {
  return load_experiment_text(std::string(kBase) + extra, "x.toml", sets, registry());
}

TEST_CASE("grid x variants x zip x seeds expand to the Cartesian product", "[unit]") {
  auto e = load(R"(
[grid]
"optim.lr" = [1e-3, 3e-4]
[[zip]]
"model.d_model" = [32, 64]
"model.n_head" = [2, 4]
[[variant]]
name = "small"
"model.n_layer" = 1
[[variant]]
name = "big"
model = { n_layer = 3 }
)");
  CHECK(e.runs.size() == 2 * 2 * 2 * 3);
  std::set<std::string> hashes;
  for (const auto& r : e.runs) {
    hashes.insert(r.hash());
    // zip keys vary together
    CHECK(std::get<int64_t>(r.values.at("model.n_head")) * 16 == std::get<int64_t>(r.values.at("model.d_model")));
    CHECK((r.variant == "small") == (std::get<int64_t>(r.values.at("model.n_layer")) == 1));
  }
  CHECK(hashes.size() == e.runs.size());
  std::vector<std::string> want{"model.d_model", "model.n_head", "model.n_layer", "optim.lr", "seed"};
  CHECK(e.varying_keys == want);
  // Defaults are filled in and typed.
  CHECK(std::get<double>(e.runs[0].values.at("model.dropout")) == 0.0);
  CHECK(std::get<int64_t>(e.runs[0].values.at("train.batch_size")) == 12);
}

TEST_CASE("--set overrides everything and identical runs merge", "[unit]") {
  auto e = load("[grid]\n\"optim.lr\" = [1e-3, 3e-4]\n", {"optim.lr=0.01", "experiment.seed=7"});
  REQUIRE(e.runs.size() == 1);
  CHECK(std::get<double>(e.runs[0].values.at("optim.lr")) == 0.01);
  CHECK(e.runs[0].seed == 7);
  // A list of seeds replaces the file's list, in either spelling; bad items name themselves.
  auto many = load("", {"experiment.seeds=[4, 5,6]"});
  REQUIRE(many.runs.size() == 3);
  CHECK(many.runs[2].seed == 6);
  CHECK(load("", {"seeds=8,9"}).runs.size() == 2);
  CHECK_THROWS_WITH(load("", {"experiment.seeds=[1, x]"}), Catch::Contains("seeds must be integers ('x' is not)"));
  CHECK_THROWS_WITH(load("", {"experiment.seeds=[]"}), Catch::Contains("no seed given"));
}

TEST_CASE("plugin sub-tables apply only to their plugin", "[unit]") {
  auto e = load("[model.gpt]\nd_model = 48\n[model.probe]\nd_model = 4\n");
  REQUIRE(e.runs.size() == 3);
  CHECK(std::get<int64_t>(e.runs[0].values.at("model.d_model")) == 48);
  CHECK_THROWS_WITH(load("[model.gtp]\nd_model = 48\n"), Catch::Contains("names no arch plugin 'gtp'"));
  // --set of the generic key beats a plugin sub-table from the file.
  auto s = load("[model.gpt]\nd_model = 48\n", {"model.d_model=64"});
  CHECK(std::get<int64_t>(s.runs[0].values.at("model.d_model")) == 64);
}

TEST_CASE("hash is canonical: key order and int-vs-real spelling do not matter", "[unit]") {
  auto a = load("[grid]\n\"optim.lr\" = [1]\n");
  auto b = load_experiment_text(std::string(kBase) + "[grid]\n\"optim.lr\" = [1.0]\n", "y.toml", {}, registry());
  CHECK(a.runs[0].hash() == b.runs[0].hash());
  RunConfig back = RunConfig::from_json(a.runs[0].canonical_json());
  CHECK(back.hash() == a.runs[0].hash());
  CHECK(a.runs[0].hash() != a.runs[1].hash());  // seeds differ
  // The same settings written in another order (tables, keys, plugin sub-table vs generic key)
  // give the same runs with the same hashes.
  const char* reordered = R"(
[train]
steps = 10
[optim]
plugin = "adamw"
[model]
n_layer = 2
plugin = "gpt"
[tokenizer]
plugin = "char"
[data]
source = "tiny_shakespeare"
plugin = "text"
[experiment]
seeds = [1, 2, 3]
name = "t"
[grid]
"optim.lr" = [1.0]
)";
  auto c = load_experiment_text(reordered, "z.toml", {}, registry());
  REQUIRE(c.runs.size() == a.runs.size());
  for (size_t i = 0; i < a.runs.size(); ++i) CHECK(c.runs[i].hash() == a.runs[i].hash());
  auto d = load_experiment_text(std::string(kBase) + "[model.gpt]\nn_layer = 2\n[grid]\n\"optim.lr\" = [1]\n", "w.toml",
                                {}, registry());
  CHECK(d.runs[0].hash() == a.runs[0].hash());
  // ... and a real difference changes the hash.
  CHECK(load("[grid]\n\"optim.lr\" = [2]\n").runs[0].hash() != a.runs[0].hash());
}

TEST_CASE("bad experiment files get UserError with file:line:col", "[unit]") {
  CHECK_THROWS_WITH(load_experiment_text("[experiment\nname = 1", "bad.toml", {}, registry()),
                    Catch::StartsWith("bad.toml:1:") && Catch::Contains("TOML syntax error"));
  CHECK_THROWS_WITH(load("[grid]\n\"model.n_layers\" = [1, 2]\n"),
                    Catch::Contains("x.toml:") && Catch::Contains("did you mean 'n_layer'"));
  CHECK_THROWS_WITH(load("", {"model.plugin=gtp"}), Catch::Contains("unknown arch plugin 'gtp'") &&
                                                        Catch::Contains("available: ") && Catch::Contains("gpt"));
  CHECK_THROWS_WITH(load("", {"model.n_layer=\"two\""}), Catch::Contains("must be int but got string"));
  CHECK_THROWS_WITH(load("", {"model.dropout=2.0"}), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(load("", {"model.n_head=3"}), Catch::Contains("divisible by n_head"));
  CHECK_THROWS_WITH(load("[trian]\nsteps = 1\n"), Catch::Contains("unknown table [trian]; did you mean [train]?"));
  CHECK_THROWS_WITH(load("[[zip]]\n\"optim.lr\" = [1e-3]\n\"optim.beta1\" = [0.9, 0.8]\n"),
                    Catch::Contains("equal lengths"));
  // An unknown key is named with its own line:column. kBase's [train] table is its last, so
  // the key is appended to it: line 17 of this text (kBase starts with a newline), column 9
  // (the value).
  std::string text = std::string(kBase) + "stesp = 1\n";
  int line = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
  CHECK_THROWS_WITH(load_experiment_text(text, "x.toml", {}, registry()),
                    Catch::StartsWith("x.toml:" + std::to_string(line) + ":9: [train]") &&
                        Catch::Contains("unknown key 'stesp'; did you mean 'steps'?"));
  // Items of a list are named by position and value.
  CHECK_THROWS_WITH(
      load_experiment_text("[experiment]\nname = \"t\"\nseeds = [1, \"two\"]\n", "s.toml", {}, registry()),
      Catch::StartsWith("s.toml:3:13") && Catch::Contains("item 2 is string \"two\""));
}

TEST_CASE("--set reaches [experiment]; numbers beyond range and oversized batches are refused", "[unit]") {
  auto e = load("", {"experiment.name=renamed", "experiment.description=a b"});
  CHECK(e.name == "renamed");
  CHECK(e.description == "a b");
  for (const auto& r : e.runs) CHECK(r.experiment == "renamed");
  CHECK(load("", {"experiment.name=\"quoted\""}).name == "quoted");
  CHECK_THROWS_WITH(load("", {"experiment.name="}), Catch::Contains("must not be empty"));
  CHECK_THROWS_WITH(load("", {"experiment.nmae=x"}), Catch::Contains("name, description and seeds"));
  CHECK_THROWS_WITH(
      load("", {"train.steps=99999999999999999999"}),
      Catch::Contains("--set train.steps=99999999999999999999") && Catch::Contains("out of the int64 range"));
  CHECK_THROWS_WITH(
      load_experiment_text(std::string(kBase) + "warmup = 99999999999999999999\n", "x.toml", {}, registry()),
      Catch::Contains("x.toml:17:") && Catch::Contains("TOML syntax error"));
  // Integer bounds are shown as integers.
  CHECK_THROWS_WITH(load("", {"train.steps=0"}), Catch::Contains("out of range: must be in [1, 1000000000000]"));
  CHECK_THROWS_WITH(load("", {"train.batch_size=9223372036854775807"}), Catch::Contains("must be in [1, 1048576]"));
  // Within each bound but too many tokens per micro-batch together.
  CHECK_THROWS_WITH(load("", {"train.batch_size=1048576", "data.seq_len=1024"}),
                    Catch::Contains("--set train.batch_size=1048576") && Catch::Contains("tokens per micro-batch"));
  // A plugin's own check points at the key it names.
  CHECK_THROWS_WITH(
      load_experiment_text(std::string(kBase) + "[data.text]\nval_fraction = 0.0\n", "v.toml", {}, registry()),
      Catch::StartsWith("v.toml:18:") && Catch::Contains("val_fraction must be above 0"));
}

TEST_CASE("dump_experiment_toml loads back to the same runs, hashes and labels", "[unit]") {
  auto check_round_trip = [](const Experiment& e) {
    std::string text = dump_experiment_toml(e);
    INFO(text);
    auto back = load_experiment_text(text, "dump.toml", {}, registry());
    REQUIRE(back.runs.size() == e.runs.size());
    for (size_t i = 0; i < e.runs.size(); ++i) {
      CHECK(back.runs[i].hash() == e.runs[i].hash());
      CHECK(back.runs[i].variant == e.runs[i].variant);
    }
    CHECK(back.name == e.name);
    CHECK(back.report.group_by == e.report.group_by);
    CHECK(back.report.target_loss == e.report.target_loss);
    CHECK(dump_experiment_toml(back) == text);  // a fixed point
  };
  check_round_trip(load(R"(
[grid]
"optim.lr" = [1e-3, 3e-4, 1e-5]
[[zip]]
"model.d_model" = [32, 64]
"model.n_head" = [2, 4]
[[variant]]
name = "small \"quoted\""
"model.n_layer" = 1
[[variant]]
name = "big"
model = { n_layer = 3 }
[report]
group_by = ["variant", "optim.lr"]
target_loss = 1.5
x = "tokens"
)"));
  // No variants: runs stay unlabelled; a description with a newline survives.
  check_round_trip(load("[grid]\n\"optim.lr\" = [1e-3, 2e-3]\n", {"experiment.description=line one\nline two"}));
  // A grid over plugins with their own keys.
  check_round_trip(load("[grid]\n\"model.plugin\" = [\"gpt\", \"gem\"]\n[model.gem]\nd_model = 32\n"));
}

TEST_CASE("missing data offline names the file to put where", "[unit]") {
  test::ScopedEnv path("LMGRID_DATA_PATH", "/nonexistent");
  test::ScopedEnv offline("LMGRID_OFFLINE", "1");
  test::ScopedEnv cache("LMGRID_CACHE", (std::filesystem::temp_directory_path() / "empty-cache").string());
  CHECK_THROWS_WITH(load(""), Catch::Contains("tinyshakespeare/input.txt") && Catch::Contains("not found") &&
                                  Catch::Contains("86c4e6aa9db7c042"));
}

TEST_CASE("experiment names with control characters are refused; others dump and load back", "[unit]") {
  // Found by tests/fuzz/fuzz_experiment: a name holding "\r" was accepted, and the comment line of
  // its `grid --dump` then held a bare carriage return, which TOML refuses.
  std::string base = kBase;
  auto with_name = [&](const std::string& name_toml) {
    std::string text = base;
    text.replace(text.find("name = \"t\""), std::string("name = \"t\"").size(), "name = " + name_toml);
    return text;
  };
  CHECK_THROWS_WITH(load_experiment_text(with_name(R"("a\rb")"), "x.toml", {}, registry()),
                    Catch::Contains("x.toml:3:8: the experiment name must not hold control characters (found U+000D)"));
  CHECK_THROWS_WITH(load_experiment_text(with_name(R"("tab\there")"), "x.toml", {}, registry()),
                    Catch::Contains("U+0009"));
  CHECK_THROWS_WITH(load_experiment_text(base, "x.toml", {"experiment.name=a\nb"}, registry()),
                    Catch::Contains("--set experiment.name=a"));
  auto e = load_experiment_text(with_name(R"("quotes \" and \\ and é ' #")"), "x.toml", {}, registry());
  auto back = load_experiment_text(dump_experiment_toml(e), "dump.toml", {}, registry());
  CHECK(back.name == "quotes \" and \\ and é ' #");
  CHECK(back.runs.at(0).hash() == e.runs.at(0).hash());
}
