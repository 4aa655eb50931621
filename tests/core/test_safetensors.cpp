// safetensors writer and reader: the exact bytes of a small file, a round trip over every dtype
// (scalars and empty tensors included), a file written by Python's `safetensors` package
// (tests/fixtures/safetensors/make_fixture.py), and every malformed-file case the reader refuses.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/store/safetensors.hpp>
#include "../support.hpp"

using namespace lmgrid;
namespace st = lmgrid::safetensors;
namespace fs = std::filesystem;

namespace {

template <class T>
std::vector<T> values(const st::Tensor& t) {
  std::vector<T> v(t.data.size() / sizeof(T));
  std::memcpy(v.data(), t.data.data(), t.data.size());
  return v;
}

// A file with header `json` (unpadded) and `buffer` bytes after it.
std::string raw_file(const std::string& json, const std::string& buffer) {
  uint64_t n = json.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + json + buffer;
}

std::string parse_error(const std::string& bytes) {
  try {
    st::parse(bytes, "f.safetensors");
  } catch (const UserError& e) {
    return e.what();
  }
  return "(parsed)";
}

}  // namespace

TEST_CASE("safetensors: the bytes of a small file", "[unit]") {
  const float w[2] = {1.0f, -2.0f};
  std::string bytes = st::serialize({{"w", st::DType::F32, {2}, w, sizeof(w)}}, {{"k", "v"}});
  const std::string header = R"({"__metadata__":{"k":"v"},"w":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  const size_t padded = (header.size() + 7) / 8 * 8;
  REQUIRE(bytes.size() == 8 + padded + 8);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK(n == padded);
  CHECK(bytes.substr(8, header.size()) == header);
  CHECK(bytes.substr(8 + header.size(), padded - header.size()) == std::string(padded - header.size(), ' '));
  CHECK(std::memcmp(bytes.data() + 8 + padded, w, 8) == 0);
}

TEST_CASE("safetensors: round trip of every dtype, scalars and empty tensors", "[unit]") {
  const float f32[6] = {0, 1.5f, -2, 3, 4, 5};
  const double f64 = 3.25;
  const int64_t i64[3] = {-1, 0, int64_t{1} << 40};
  const uint16_t bf16[2] = {0x3F80, 0xC000};  // 1.0, -2.0
  const uint8_t b[3] = {1, 0, 1};
  const int32_t i32[1] = {-7};
  std::vector<st::TensorRef> in = {
      {"layer.weight", st::DType::F32, {2, 3}, f32, sizeof(f32)},
      {"scale", st::DType::F64, {}, &f64, 8},
      {"ids", st::DType::I64, {3}, i64, sizeof(i64)},
      {"bf", st::DType::BF16, {1, 2}, bf16, 4},
      {"mask", st::DType::BOOL, {3}, b, 3},
      {"empty", st::DType::U8, {0, 5}, nullptr, 0},
      {"i", st::DType::I32, {1, 1, 1}, i32, 4},
  };
  fs::path file = fs::temp_directory_path() / ("lmgrid-st-" + std::to_string(getpid()) + ".safetensors");
  st::write(file, in, {{"format", "pt"}, {"note", "ünïcode"}});
  st::File f = st::read(file);
  fs::remove(file);
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "ünïcode"}});
  REQUIRE(f.tensors.size() == in.size());
  for (size_t k = 0; k < in.size(); ++k) {  // buffer order = the order written
    INFO(in[k].name);
    CHECK(f.tensors[k].name == in[k].name);
    CHECK(f.tensors[k].dtype == in[k].dtype);
    CHECK(f.tensors[k].shape == in[k].shape);
    CHECK(f.tensors[k].data == std::string(static_cast<const char*>(in[k].data ? in[k].data : ""), in[k].nbytes));
  }
  CHECK(values<double>(*f.find("scale")) == std::vector<double>{3.25});
  CHECK(f.find("absent") == nullptr);
  for (auto d :
       {st::DType::BOOL, st::DType::U8, st::DType::I8, st::DType::I16, st::DType::U16, st::DType::F16, st::DType::BF16,
        st::DType::I32, st::DType::U32, st::DType::F32, st::DType::I64, st::DType::U64, st::DType::F64})
    CHECK(st::parse_dtype(st::dtype_name(d)) == d);
}

TEST_CASE("safetensors: reads the file Python's safetensors wrote", "[unit]") {
  auto path = lmgrid::test::source_root() / "tests" / "fixtures" / "safetensors" / "python.safetensors";
  st::File f = st::read(path);
  CHECK(f.metadata.at("format") == "np");
  CHECK(f.metadata.at("note") == "written by safetensors (Python)");
  REQUIRE(f.tensors.size() == 7);
  const auto* w = f.find("weight");
  REQUIRE(w);
  CHECK(w->dtype == st::DType::F32);
  CHECK(w->shape == std::vector<int64_t>{2, 3});
  CHECK(values<float>(*w) == std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f});
  CHECK(values<int64_t>(*f.find("ids")) == std::vector<int64_t>{-1, 0, 1, int64_t{1} << 40});
  CHECK(f.find("scale")->shape.empty());
  CHECK(values<double>(*f.find("scale")) == std::vector<double>{3.25});
  CHECK(values<uint16_t>(*f.find("half")) == std::vector<uint16_t>{0x3E00, 0xC000});  // 1.5, -2.0 in IEEE half
  CHECK(f.find("mask")->dtype == st::DType::BOOL);
  CHECK(f.find("mask")->data == std::string("\x01\x00\x01", 3));
  CHECK(f.find("empty")->shape == std::vector<int64_t>{0, 4});
  CHECK(f.find("empty")->data.empty());
  CHECK(values<int16_t>(*f.find("small")) == std::vector<int16_t>{-7, 8});
}

TEST_CASE("safetensors: the writer refuses what the format cannot hold", "[unit]") {
  const float x[2] = {1, 2};
  CHECK_THROWS_WITH(st::serialize({{"a", st::DType::F32, {3}, x, 8}}), Catch::Contains("has 8 bytes"));
  CHECK_THROWS_WITH(st::serialize({{"a", st::DType::F32, {2}, x, 8}, {"a", st::DType::F32, {2}, x, 8}}),
                    Catch::Contains("given twice"));
  CHECK_THROWS_WITH(st::serialize({{"__metadata__", st::DType::F32, {2}, x, 8}}), Catch::Contains("not a tensor name"));
  CHECK_THROWS_WITH(st::serialize({{"a", st::DType::F32, {-2}, x, 8}}), Catch::Contains("negative dimension"));
  CHECK_THROWS_AS(st::parse_dtype("F8"), UserError);
}

TEST_CASE("safetensors: the reader refuses malformed files, saying what is wrong", "[unit]") {
  const std::string four(4, '\0'), eight(8, '\0');
  CHECK_THAT(parse_error("abc"), Catch::Contains("f.safetensors") && Catch::Contains("shorter than the 8-byte"));
  std::string huge(8, '\0');
  huge[7] = 1;  // 2^56
  CHECK_THAT(parse_error(huge), Catch::Contains("over the limit"));
  CHECK_THAT(parse_error(raw_file("{}", "").substr(0, 9)), Catch::Contains("runs past the end"));
  CHECK_THAT(parse_error(raw_file("[1]", "")), Catch::Contains("does not start with '{'"));
  CHECK_THAT(parse_error(raw_file("{\"a\":", "")), Catch::Contains("header JSON"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}})", "x")),
             Catch::Contains("unknown safetensors dtype 'F8'"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", four)), Catch::Contains("no shape"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", four)),
             Catch::Contains("shape has -1"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four)),
             Catch::Contains("hold 4 bytes") && Catch::Contains("need 8"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", four)),
             Catch::Contains("outside the 4-byte buffer"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight)),
             Catch::Contains("a gap"));
  CHECK_THAT(
      parse_error(raw_file(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          eight)),
      Catch::Contains("overlaps"));
  CHECK_THAT(parse_error(raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight)),
             Catch::Contains("end at byte 4 of the 8-byte buffer"));
  CHECK_THAT(parse_error(raw_file(R"({"__metadata__":{"k":1}})", "")), Catch::Contains("is not a string"));
  CHECK_THAT(parse_error(raw_file(R"({"__metadata__":{"k":"v"}})", "")), Catch::Contains("(parsed)"));
}
