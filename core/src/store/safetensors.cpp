// safetensors writer and reader (see lmgrid/store/safetensors.hpp).
#include "lmgrid/store/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors stores little-endian bytes");

namespace lmgrid::safetensors {

namespace {

using json = nlohmann::json;

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},   {DType::I8, "I8", 1},     {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2}, {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},   {DType::F32, "F32", 4}, {DType::I64, "I64", 8},   {DType::U64, "U64", 8},
    {DType::F64, "F64", 8},
};
constexpr uint64_t kMaxHeader = 100'000'000;  // what the reference implementation accepts

const DTypeInfo& info(DType d) {
  for (const auto& i : kDTypes)
    if (i.dtype == d) return i;
  throw std::invalid_argument("safetensors: unknown dtype");
}

}  // namespace

const char* dtype_name(DType d) { return info(d).name; }
size_t dtype_size(DType d) { return info(d).size; }

DType parse_dtype(const std::string& name) {
  std::string known;
  for (const auto& i : kDTypes) {
    if (name == i.name) return i.dtype;
    known += known.empty() ? i.name : std::string(", ") + i.name;
  }
  throw UserError(fmt::format("unknown safetensors dtype '{}' (known: {})", name, known));
}

int64_t element_count(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    if (d < 0 || __builtin_mul_overflow(n, d, &n)) throw std::invalid_argument("safetensors: shape out of range");
  return n;
}

const Tensor* File::find(const std::string& name) const {
  for (const auto& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

std::string serialize(const std::vector<TensorRef>& tensors, const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (t.name == "__metadata__") throw std::invalid_argument("safetensors: '__metadata__' is not a tensor name");
    if (!names.insert(t.name).second) throw std::invalid_argument("safetensors: tensor '" + t.name + "' given twice");
    for (int64_t d : t.shape)
      if (d < 0) throw std::invalid_argument("safetensors: tensor '" + t.name + "' has a negative dimension");
    const uint64_t want = static_cast<uint64_t>(element_count(t.shape)) * dtype_size(t.dtype);
    if (t.nbytes != want || (want > 0 && t.data == nullptr))
      throw std::invalid_argument(fmt::format("safetensors: tensor '{}' has {} bytes, its shape and {} need {}", t.name,
                                              t.nbytes, dtype_name(t.dtype), want));
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + want}}};
    offset += want;
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const json::exception& e) {  // a name or metadata value that is not UTF-8
    throw std::invalid_argument(std::string("safetensors: header: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the buffer starts 8-byte aligned
  std::string out;
  out.reserve(8 + text.size() + offset);
  const uint64_t n = text.size();
  out.append(reinterpret_cast<const char*>(&n), 8);
  out += text;
  for (const auto& t : tensors)
    if (t.nbytes > 0) out.append(static_cast<const char*>(t.data), t.nbytes);
  return out;
}

void write(const std::filesystem::path& file, const std::vector<TensorRef>& tensors,
           const std::map<std::string, std::string>& metadata) {
  std::string bytes = serialize(tensors, metadata);
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

File parse(std::string_view bytes, const std::string& what) {
  auto bad = [&](const std::string& msg) { return UserError(what + ": not a valid safetensors file: " + msg); };
  if (bytes.size() < 8) throw bad(fmt::format("{} bytes, shorter than the 8-byte header length", bytes.size()));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > kMaxHeader) throw bad(fmt::format("header length {} is over the limit of {}", n, kMaxHeader));
  if (n > bytes.size() - 8)
    throw bad(fmt::format("header length {} runs past the end of the file ({} bytes)", n, bytes.size()));
  std::string_view text = bytes.substr(8, n);
  if (text.empty() || text[0] != '{') throw bad("the header does not start with '{'");
  json header;
  try {
    header = json::parse(text);
  } catch (const json::exception& e) {
    throw bad(std::string("header JSON: ") + e.what());
  }
  if (!header.is_object()) throw bad("the header is not a JSON object");
  const uint64_t buffer = bytes.size() - 8 - n;
  File f;
  struct Span {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Span> spans;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw bad("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw bad("__metadata__ value of '" + k + "' is not a string");
        f.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    auto field = [&, &name = name, &entry = entry](const char* key) -> const json& {
      if (!entry.is_object() || !entry.contains(key)) throw bad("tensor '" + name + "' has no " + key);
      return entry.at(key);
    };
    Tensor t;
    t.name = name;
    const json& dt = field("dtype");
    if (!dt.is_string()) throw bad("tensor '" + name + "': dtype is not a string");
    try {
      t.dtype = parse_dtype(dt.get<std::string>());
    } catch (const UserError& e) {
      throw bad("tensor '" + name + "': " + e.what());
    }
    const json& shape = field("shape");
    if (!shape.is_array()) throw bad("tensor '" + name + "': shape is not an array");
    for (const auto& d : shape) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 62))
        throw bad("tensor '" + name + "': shape has " + d.dump());
      t.shape.push_back(d.get<int64_t>());
    }
    const json& off = field("data_offsets");
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      throw bad("tensor '" + name + "': data_offsets is not [begin, end]");
    Span s{off[0].get<uint64_t>(), off[1].get<uint64_t>(), f.tensors.size()};
    if (s.end < s.begin || s.end > buffer)
      throw bad(
          fmt::format("tensor '{}': data_offsets [{}, {}] outside the {}-byte buffer", name, s.begin, s.end, buffer));
    uint64_t want = 0;
    try {
      want = static_cast<uint64_t>(element_count(t.shape)) * dtype_size(t.dtype);
    } catch (const std::invalid_argument&) {
      throw bad("tensor '" + name + "': the shape's element count overflows");
    }
    if (want / dtype_size(t.dtype) != static_cast<uint64_t>(element_count(t.shape)) || s.end - s.begin != want)
      throw bad(fmt::format("tensor '{}': data_offsets [{}, {}] hold {} bytes, its shape and {} need {}", name, s.begin,
                            s.end, s.end - s.begin, dtype_name(t.dtype), want));
    t.data.assign(bytes.data() + 8 + n + s.begin, s.end - s.begin);
    spans.push_back(s);
    f.tensors.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t at = 0;
  for (const auto& s : spans) {
    if (s.begin != at)
      throw bad(fmt::format("tensor '{}' starts at byte {} of the buffer, expected {} ({})", f.tensors[s.index].name,
                            s.begin, at, s.begin < at ? "it overlaps another" : "a gap"));
    at = s.end;
  }
  if (at != buffer) throw bad(fmt::format("the tensors end at byte {} of the {}-byte buffer", at, buffer));
  std::vector<Tensor> ordered;
  for (const auto& s : spans) ordered.push_back(std::move(f.tensors[s.index]));
  f.tensors = std::move(ordered);
  return f;
}

File read(const std::filesystem::path& file) { return parse(read_file(file), file.string()); }

}  // namespace lmgrid::safetensors
