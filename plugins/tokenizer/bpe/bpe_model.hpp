// tokenizer/bpe: a byte-level BPE vocabulary (token id -> bytes, pair -> merged token) with
// encoding of pre-tokenized pieces and training from text. No I/O and no plugin types here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lmgrid::bpe {

class Model {
 public:
  // GPT-2's published vocabulary: the `encoder.json` and `vocab.bpe` texts. Pairs are every split
  // of every token into two tokens, ranked by the merged token's id, and a piece that is itself a
  // token is that token: tiktoken's rules (data_gym_to_mergeable_bpe_ranks + byte_pair_encode).
  static Model from_gpt2(const std::string& encoder_json, const std::string& vocab_bpe);
  // Ids 0-255 the bytes, then one id per merge (a, b), in the order given.
  static Model from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges);
  // Learns merges from `text` (pre-tokenized like GPT-2) until the vocabulary has `vocab_size`
  // tokens or no pair occurs twice. Ties go to the pair whose merged bytes sort first.
  static Model train(std::string_view text, int64_t vocab_size);

  // Appends the ids of one pre-tokenized piece.
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;
  // Appends the bytes of token `id` (must be < size()).
  const std::string& bytes(int64_t id) const { return tokens_[static_cast<size_t>(id)]; }
  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  // Id of the token with exactly these bytes, or -1.
  int64_t find(const std::string& bytes) const;
  const std::vector<std::pair<int32_t, int32_t>>& merges() const { return merges_; }

 private:
  void add_pair(int32_t a, int32_t b, int32_t merged) {
    pairs_.emplace(static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b), merged);
  }
  int32_t pair(int32_t a, int32_t b) const {
    auto it = pairs_.find(static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b));
    return it == pairs_.end() ? -1 : it->second;
  }
  std::vector<std::string> tokens_;                  // id -> bytes
  std::unordered_map<std::string, int32_t> index_;   // bytes -> id
  std::unordered_map<uint64_t, int32_t> pairs_;      // (a << 32 | b) -> merged id (its rank)
  std::vector<std::pair<int32_t, int32_t>> merges_;  // trained models: what save() writes
  int32_t byte_id_[256] = {};
  bool whole_piece_lookup_ = false;  // tiktoken: a piece that is a token is that token
};

}  // namespace lmgrid::bpe
