// Parameter validation: defaults, types, ranges, unknown keys with hints.
#include <catch2/catch.hpp>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/params.hpp>

using namespace lmgrid;

static const std::vector<ParamSpec> kSpecs{
    int_param("n_layer", 4, "layers", 1, 64),
    real_param("dropout", 0.0, "dropout", 0.0, 1.0),
    bool_param("bias", false, "bias"),
    string_param("mode", "a", "mode", {"a", "b"}),
};

TEST_CASE("validate_params fills defaults and converts ints to reals", "[unit]") {
  Params p = validate_params(kSpecs, {{"dropout", int64_t{0}}}, "[model]");
  CHECK(p.i("n_layer") == 4);
  CHECK(p.f("dropout") == 0.0);
  CHECK(std::holds_alternative<double>(p.values().at("dropout")));
  CHECK(p.s("mode") == "a");
  CHECK_FALSE(p.b("bias"));
}

TEST_CASE("validate_params rejects bad input with what and where", "[unit]") {
  std::map<std::string, std::string> loc{{"n_layers", "x.toml:3:1"}};
  try {
    validate_params(kSpecs, {{"n_layers", int64_t{2}}}, "[model] (plugin gpt)", &loc);
    FAIL("no error");
  } catch (const UserError& e) {
    std::string m = e.what();
    CHECK(m.find("x.toml:3:1") == 0);
    CHECK(m.find("unknown key 'n_layers'") != std::string::npos);
    CHECK(m.find("did you mean 'n_layer'") != std::string::npos);
  }
  CHECK_THROWS_WITH(validate_params(kSpecs, {{"n_layer", std::string("four")}}, "[model]"),
                    Catch::Contains("must be int but got string"));
  CHECK_THROWS_WITH(validate_params(kSpecs, {{"n_layer", int64_t{0}}}, "[model]"),
                    Catch::Contains("out of range: must be in [1, 64]"));
  CHECK_THROWS_WITH(validate_params(kSpecs, {{"dropout", 1.5}}, "[model]"), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(validate_params(kSpecs, {{"mode", std::string("c")}}, "[model]"),
                    Catch::Contains("not one of: a, b"));
  CHECK_THROWS_AS(validate_params(kSpecs, {{"bias", int64_t{1}}}, "[model]"), UserError);
}

TEST_CASE("canonical value text round-trips reals", "[unit]") {
  CHECK(to_string(Value(1e-3)) == "0.001");
  CHECK(to_string(Value(1.0)) == "1.0");
  CHECK(to_string(Value(int64_t{3})) == "3");
  CHECK(to_string(Value(0.1 + 0.2)) == "0.30000000000000004");
  CHECK(nearest("lerning_rate", {"learning_rate", "n_layer"}) == "learning_rate");
  CHECK(nearest("zzzzzz", {"lr"}).empty());
}
