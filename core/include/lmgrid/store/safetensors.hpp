// safetensors files (Hugging Face's tensor format), written and read without LibTorch.
//
// Layout:  u64 little-endian N | N bytes of JSON header | byte buffer
// The header is one JSON object: for every tensor  "name": {"dtype": "F32", "shape": [2, 3],
// "data_offsets": [begin, end]}  (offsets into the byte buffer, end - begin = bytes of the tensor),
// plus an optional "__metadata__": {string: string}. The writer pads the header with spaces so the
// buffer starts 8-byte aligned, and lays the tensors out contiguously in the order given; tensor
// bytes are little-endian, row-major. The reader checks everything a malformed file can get
// wrong: N against the file size, the JSON, each dtype and shape, and that the offsets tile the
// buffer exactly (no gap, no overlap, nothing past its end) as the format requires.
//
// Not here: memory mapping, LibTorch tensors (callers pass bytes; see export/hf_export.cpp),
// big-endian hosts (refused at compile time).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace lmgrid::safetensors {

// The format's dtypes (safetensors' names: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 I64 U64 F64).
enum class DType { BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, I64, U64, F64 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);  // bytes per element
// The dtype of a name; throws UserError naming the known ones.
DType parse_dtype(const std::string& name);

// A tensor to write: `data` points at element_count(shape) * dtype_size(dtype) bytes.
struct TensorRef {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // {} is a scalar (one element)
  const void* data = nullptr;
  size_t nbytes = 0;
};

// A tensor read back: its bytes copied out of the file.
struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::string data;
};

struct File {
  std::map<std::string, std::string> metadata;        // "__metadata__", empty when absent
  std::vector<Tensor> tensors;                        // in buffer order
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

int64_t element_count(const std::vector<int64_t>& shape);

// The whole file as bytes. Throws std::invalid_argument for a name used twice, the reserved
// name "__metadata__", a negative dimension, or nbytes that does not match the shape.
std::string serialize(const std::vector<TensorRef>& tensors, const std::map<std::string, std::string>& metadata = {});
// serialize() into `file` (plain write; the caller picks atomicity). Throws on I/O errors.
void write(const std::filesystem::path& file, const std::vector<TensorRef>& tensors,
           const std::map<std::string, std::string>& metadata = {});

// Parses and validates a whole file's bytes; `what` names it in errors. Throws UserError.
File parse(std::string_view bytes, const std::string& what = "safetensors data");
File read(const std::filesystem::path& file);

}  // namespace lmgrid::safetensors
