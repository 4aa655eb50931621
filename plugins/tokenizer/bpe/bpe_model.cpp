// tokenizer/bpe: vocabulary, piece encoding (lowest-ranked pair first) and training.
#include "bpe_model.hpp"

#include <algorithm>
#include <queue>
#include <stdexcept>
#include <tuple>

#include <nlohmann/json.hpp>

#include "pretokenize.hpp"

namespace lmgrid::bpe {

namespace {

// GPT-2's byte -> code point map: printable Latin-1 bytes map to themselves, the other 68 bytes
// to U+0100 onwards in byte order.
std::vector<char32_t> byte_to_unicode() {
  std::vector<char32_t> map(256);
  int extra = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    map[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + extra++);
  }
  return map;
}

// A token string of encoder.json / vocab.bpe (UTF-8 over the mapped alphabet) -> its bytes.
std::string unmap(const std::string& s, const std::unordered_map<char32_t, unsigned char>& inverse) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : 3;  // the mapped alphabet is below U+0144
    if (n == 1)
      cp = c;
    else if (n == 2 && i + 1 < s.size())
      cp = (c & 0x1F) << 6 | (static_cast<unsigned char>(s[i + 1]) & 0x3F);
    else
      throw std::runtime_error("GPT-2 vocabulary: token '" + s + "' is outside the byte alphabet");
    auto it = inverse.find(cp);
    if (it == inverse.end())
      throw std::runtime_error("GPT-2 vocabulary: token '" + s + "' is outside the byte alphabet");
    out += static_cast<char>(it->second);
    i += n;
  }
  return out;
}

}  // namespace

Model Model::from_gpt2(const std::string& encoder_json, const std::string& vocab_bpe) {
  std::unordered_map<char32_t, unsigned char> inverse;
  auto map = byte_to_unicode();
  for (int b = 0; b < 256; ++b) inverse[map[b]] = static_cast<unsigned char>(b);
  Model m;
  m.whole_piece_lookup_ = true;
  auto enc = nlohmann::json::parse(encoder_json);
  m.tokens_.resize(enc.size());
  std::vector<bool> seen(enc.size());
  for (const auto& [key, value] : enc.items()) {
    int64_t id = value.get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(enc.size()) || seen[id])
      throw std::runtime_error("GPT-2 encoder.json: ids are not 0..n-1 (id " + std::to_string(id) + ")");
    seen[id] = true;
    m.tokens_[id] = key.rfind("<|", 0) == 0 && key.size() > 4 && key.compare(key.size() - 2, 2, "|>") == 0
                        ? key  // <|endoftext|>: a special, written as itself
                        : unmap(key, inverse);
    m.index_[m.tokens_[id]] = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = m.index_.find(std::string(1, static_cast<char>(b)));
    if (it == m.index_.end()) throw std::runtime_error("GPT-2 encoder.json lacks byte " + std::to_string(b));
    m.byte_id_[b] = it->second;
  }
  // vocab.bpe's merge i makes token 256 + i: check it, so a mismatched pair of files is refused.
  size_t line_start = vocab_bpe.find('\n') + 1, merge = 0;
  while (line_start < vocab_bpe.size()) {
    size_t end = vocab_bpe.find('\n', line_start);
    if (end == std::string::npos) end = vocab_bpe.size();
    std::string line = vocab_bpe.substr(line_start, end - line_start);
    line_start = end + 1;
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string merged = unmap(line.substr(0, sp), inverse) + unmap(line.substr(sp + 1), inverse);
    int64_t id = 256 + static_cast<int64_t>(merge++);
    if (id >= m.size() || m.tokens_[id] != merged)
      throw std::runtime_error("GPT-2 vocab.bpe merge " + std::to_string(merge) + " does not match encoder.json");
  }
  // tiktoken ranks a pair by the id of the token the two parts concatenate to, whichever merge
  // made it: every split of every token into two tokens is a pair.
  for (int32_t id = 0; id < static_cast<int32_t>(m.size()); ++id) {
    const std::string& t = m.tokens_[id];
    if (t.rfind("<|", 0) == 0) continue;
    for (size_t k = 1; k < t.size(); ++k) {
      auto a = m.index_.find(t.substr(0, k)), b = m.index_.find(t.substr(k));
      if (a != m.index_.end() && b != m.index_.end()) m.add_pair(a->second, b->second, id);
    }
  }
  return m;
}

Model Model::from_merges(const std::vector<std::pair<int32_t, int32_t>>& merges) {
  Model m;
  for (int b = 0; b < 256; ++b) {
    m.tokens_.emplace_back(1, static_cast<char>(b));
    m.byte_id_[b] = b;
  }
  for (auto [a, b] : merges) {
    if (a < 0 || b < 0 || a >= m.size() || b >= m.size())
      throw std::runtime_error("BPE merge (" + std::to_string(a) + ", " + std::to_string(b) +
                               ") names an unknown token");
    int32_t id = static_cast<int32_t>(m.size());
    m.tokens_.push_back(m.tokens_[a] + m.tokens_[b]);
    m.add_pair(a, b, id);
    m.merges_.emplace_back(a, b);
  }
  for (int32_t id = 0; id < static_cast<int32_t>(m.size()); ++id) m.index_.emplace(m.tokens_[id], id);
  return m;
}

int64_t Model::find(const std::string& bytes) const {
  auto it = index_.find(bytes);
  return it == index_.end() ? -1 : it->second;
}

void Model::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (whole_piece_lookup_) {
    auto it = index_.find(std::string(piece));
    if (it != index_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // parts[i]: a token and the rank of merging it with parts[i + 1] (-1: no such token).
  struct Part {
    int32_t id, rank;
  };
  std::vector<Part> parts(piece.size());
  for (size_t i = 0; i < piece.size(); ++i) parts[i] = {byte_id_[static_cast<unsigned char>(piece[i])], -1};
  for (size_t i = 0; i + 1 < parts.size(); ++i) parts[i].rank = pair(parts[i].id, parts[i + 1].id);
  for (;;) {
    size_t best = parts.size();
    for (size_t i = 0; i + 1 < parts.size(); ++i)
      if (parts[i].rank >= 0 && (best == parts.size() || parts[i].rank < parts[best].rank)) best = i;
    if (best == parts.size()) break;
    parts[best].id = parts[best].rank;
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(best) + 1);
    parts[best].rank = best + 1 < parts.size() ? pair(parts[best].id, parts[best + 1].id) : -1;
    if (best > 0) parts[best - 1].rank = pair(parts[best - 1].id, parts[best].id);
  }
  for (const auto& p : parts) out.push_back(p.id);
}

Model Model::train(std::string_view text, int64_t vocab_size) {
  std::vector<std::string_view> pieces;
  pretokenize(text, pieces);
  std::unordered_map<std::string_view, int64_t> freq;
  for (auto p : pieces) ++freq[p];
  struct Word {
    std::vector<int32_t> syms;
    int64_t count;
  };
  std::vector<Word> words;
  words.reserve(freq.size());
  for (const auto& [w, n] : freq) {
    Word word{{}, n};
    for (unsigned char c : w) word.syms.push_back(c);
    words.push_back(std::move(word));
  }
  // Deterministic whatever the hash map's order: words sorted by their bytes.
  std::sort(words.begin(), words.end(), [](const Word& a, const Word& b) { return a.syms < b.syms; });
  auto key = [](int32_t a, int32_t b) { return static_cast<uint64_t>(a) << 32 | static_cast<uint32_t>(b); };
  std::unordered_map<uint64_t, int64_t> counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair -> words that had it (may repeat)
  for (int32_t w = 0; w < static_cast<int32_t>(words.size()); ++w)
    for (size_t i = 0; i + 1 < words[w].syms.size(); ++i) {
      uint64_t k = key(words[w].syms[i], words[w].syms[i + 1]);
      counts[k] += words[w].count;
      where[k].push_back(w);
    }
  // Max count first; among equal counts the smaller (a, b).
  using Entry = std::tuple<int64_t, int64_t, int64_t>;  // count, -a, -b
  std::priority_queue<Entry> heap;
  for (const auto& [k, n] : counts)
    heap.emplace(n, -static_cast<int64_t>(k >> 32), -static_cast<int64_t>(k & 0xFFFFFFFF));
  std::vector<std::pair<int32_t, int32_t>> merges;
  int64_t next_id = 256;
  while (next_id < vocab_size && !heap.empty()) {
    auto [n, na, nb] = heap.top();
    heap.pop();
    int32_t a = static_cast<int32_t>(-na), b = static_cast<int32_t>(-nb);
    auto it = counts.find(key(a, b));
    if (it == counts.end() || it->second != n) continue;  // stale entry
    if (n < 2) break;
    int32_t id = static_cast<int32_t>(next_id++);
    merges.emplace_back(a, b);
    std::vector<int32_t> ws = std::move(where[key(a, b)]);
    where.erase(key(a, b));
    std::sort(ws.begin(), ws.end());
    ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
    std::unordered_map<uint64_t, int64_t> changed;
    for (int32_t w : ws) {
      auto& s = words[w].syms;
      const int64_t c = words[w].count;
      std::vector<int32_t> merged;
      merged.reserve(s.size());
      bool any = false;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          merged.push_back(id), ++i, any = true;
        } else {
          merged.push_back(s[i]);
        }
      }
      if (!any) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) changed[key(s[i], s[i + 1])] -= c;
      for (size_t i = 0; i + 1 < merged.size(); ++i) {
        uint64_t k = key(merged[i], merged[i + 1]);
        changed[k] += c;
        if (merged[i] == id || merged[i + 1] == id) where[k].push_back(w);
      }
      s = std::move(merged);
    }
    for (const auto& [k, d] : changed) {
      if (d == 0) continue;
      int64_t& v = counts[k];
      v += d;
      if (v <= 0)
        counts.erase(k);
      else
        heap.emplace(v, -static_cast<int64_t>(k >> 32), -static_cast<int64_t>(k & 0xFFFFFFFF));
    }
  }
  return from_merges(merges);
}

}  // namespace lmgrid::bpe
