// Named data sources: search path, cache, libcurl download with sha256 verification.
#include "lmgrid/data/data_source.hpp"

#include <cstdio>
#include <cstdlib>

#if LMGRID_WITH_CURL
#include <curl/curl.h>
#endif
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/util.hpp"
#include "lmgrid/base/env.hpp"

namespace lmgrid {

namespace fs = std::filesystem;

const std::vector<DataSource>& known_sources() {
  // The last two fields: where a source's documents end (documents.hpp) and a group's members.
  static const std::vector<DataSource> sources = [] {
    std::vector<DataSource> v{
        {"tiny_shakespeare",
         "tinyshakespeare/input.txt",
         "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
         1115394,
         "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
         "Karpathy's Tiny Shakespeare (1.1 MB, 65 characters)",
         "whole",
         {}},
        {"tinystories_train_sample",
         "tinystories/TinyStories-train.head2316.txt",
         "",
         2096346,
         "ba02237f5747a07d420cb7329f721fdc51b6f5c35a81788b9c4bb871e15ff30a",
         "first 2,316 TinyStories train stories (2.1 MB)",
         "endoftext",
         {}},
        {"tinystories_val_sample",
         "tinystories/TinyStories-validation.head4300.txt",
         "",
         794375,
         "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6",
         "first 4,300 TinyStories validation stories (0.8 MB)",
         "blank_lines",
         {}},
        {"gpt2_encoder",
         "gpt2/encoder.json",
         "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
         1042301,
         "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
         "GPT-2's BPE vocabulary, token -> id (tokenizer/bpe, pretrained = \"gpt2\")",
         "whole",
         {}},
        {"gpt2_vocab",
         "gpt2/vocab.bpe",
         "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
         456318,
         "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
         "GPT-2's BPE merges in rank order (tokenizer/bpe, pretrained = \"gpt2\")",
         "whole",
         {}},
        {"wikitext2_valid",
         "wikitext-2/valid.txt",
         "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/valid.txt",
         1121681,
         "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
         "WikiText-2 validation, tokenized word-level (1.1 MB; articles are documents)",
         "wikitext",
         {}},
        {"wikitext2_test",
         "wikitext-2/test.txt",
         "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/test.txt",
         1256449,
         "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
         "WikiText-2 test, tokenized word-level (1.3 MB; articles are documents)",
         "wikitext",
         {}},
        {"kjv",
         "kjv/kjv.txt",
         "",
         4298239,
         "6f74f5589333c56c263963e6347dba662bae2d96861302e690aaae0b4a855eda",
         "King James Bible, one verse per line (4.3 MB; chapters are documents)",
         "kjv",
         {}},
        {"austen_sense",
         "austen/sensesensibility.txt",
         "",
         673688,
         "105e1651fe93bed7130078578efd31e0c557d68667ba672ddc876f735b30fe09",
         "Austen, Sense and Sensibility",
         "whole",
         {}},
        {"austen_pride",
         "austen/prideprejudice.txt",
         "",
         684768,
         "dfc684d4f857fa938268f9ab9c5567b64bd0691251eca959644adeabe6287a4d",
         "Austen, Pride and Prejudice",
         "whole",
         {}},
        {"austen_mansfield",
         "austen/mansfieldpark.txt",
         "",
         883280,
         "98bc90519cdf4ef663ad7de2734bb529435ef24f7abbde6bb1a50898871dafe9",
         "Austen, Mansfield Park",
         "whole",
         {}},
        {"austen_emma",
         "austen/emma.txt",
         "",
         883028,
         "7c67b5985c6d0de1efaeb5d342d52cb82c38083c40e2295129e30e87ee690ebe",
         "Austen, Emma",
         "whole",
         {}},
        {"austen_northanger",
         "austen/northangerabbey.txt",
         "",
         433411,
         "51f91bbe0517db8e65cff009b097ce0a1836124c4e0532ac19e6c0cad982abed",
         "Austen, Northanger Abbey",
         "whole",
         {}},
        {"austen_persuasion",
         "austen/persuasion.txt",
         "",
         466854,
         "8061549557aebd2fd6e353d18d9197cb707029112bd52d4d8b174583a925848a",
         "Austen, Persuasion",
         "whole",
         {}},
        // bAbI (Weston et al. 2015, tasks 1-20 v1.2; data/babi). A relative path ending in '/' is
        // a folder source: the folder must exist, nothing in it is verified or downloaded. The
        // official release (http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz)
        // is laid out differently (tasks_1-20_v1-2/{en,en-10k,hn,...}/); data/babi reads it given
        // as a path, so neither source downloads it.
        {"babi_en",
         "babi/en/",
         "",
         5901983,
         "",
         "bAbI tasks 1-20 v1.2, 1k training questions per task (a folder of 40 files, 5.9 MB; data/babi)",
         "whole",
         {}},
        {"babi_en10k",
         "babi/en-10k.tar.xz",
         "",
         1688844,
         "a821dc5c4f7bf747860db1d3226bc11446efc7834018b9f3b67017c6a46a74fc",
         "bAbI tasks 1-20 v1.2, 10k training questions per task (tar.xz of 39 files: no qa3 train; data/babi)",
         "whole",
         {}},
    };
    // A group: Austen's six novels, each a document.
    v.push_back({"austen",
                 "",
                 "",
                 4025029,
                 "",
                 "Jane Austen's six novels (4.0 MB; each novel is a document)",
                 "whole",
                 {"austen_sense", "austen_pride", "austen_mansfield", "austen_emma", "austen_northanger",
                  "austen_persuasion"}});
    return v;
  }();
  return sources;
}

std::optional<DataSource> find_source(const std::string& name) {
  for (const auto& s : known_sources())
    if (s.name == name) return s;
  return std::nullopt;
}

#if LMGRID_WITH_CURL
static size_t write_cb(char* ptr, size_t size, size_t n, void* user) {
  return std::fwrite(ptr, size, n, static_cast<FILE*>(user)) * size;
}
#endif

// Downloads url to dest (atomically); returns "" on success or the error text.
static std::string download(const std::string& url, const fs::path& dest, const std::string& sha256) {
  fs::create_directories(dest.parent_path());
  fs::path tmp = dest;
  tmp += ".download";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return "cannot write " + tmp.string();
#if !LMGRID_WITH_CURL
  (void)url, (void)sha256, (void)f;
  std::fclose(f);
  fs::remove(tmp);
  return "this lmgrid was built without downloads (-DLMGRID_WITH_CURL=OFF); put the file in LMGRID_DATA_PATH";
#else
  CURL* curl = curl_easy_init();
  char err[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, f);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, err);
  std::fprintf(stderr, "lmgrid: downloading %s\n", url.c_str());
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  std::fclose(f);
  if (rc != CURLE_OK) {
    fs::remove(tmp);
    return err[0] ? err : curl_easy_strerror(rc);
  }
#endif
  if (!sha256.empty()) {
    std::string got = sha256_file(tmp);
    if (got != sha256) {
      fs::remove(tmp);
      return fmt::format("sha256 mismatch: got {}, expected {}", got, sha256);
    }
  }
  fs::rename(tmp, dest);
  return "";
}

fs::path resolve_source(const std::string& name_or_path) {
  auto src = find_source(name_or_path);
  if (src && !src->members.empty())
    throw UserError(fmt::format("data source '{}' is a group of {} files ({}); this setting takes one file", src->name,
                                src->members.size(), fmt::join(src->members, ", ")));
  if (!src) {
    fs::path p(name_or_path);
    if (fs::is_regular_file(p)) return p;
    std::string names;
    for (const auto& s : known_sources()) names += (names.empty() ? "" : ", ") + s.name;
    throw UserError(
        fmt::format("data source '{}' is neither a known source ({}) nor an existing file", name_or_path, names));
  }
  // A folder source (relative path ending in '/') resolves to an existing folder.
  const bool folder = !src->relative_path.empty() && src->relative_path.back() == '/';
  auto present = [&](const fs::path& p) { return folder ? fs::is_directory(p) : fs::is_regular_file(p); };
  auto found = [&](const fs::path& p) { return folder ? p.parent_path() : p; };  // "a/b/" -> "a/b"
  std::vector<fs::path> searched;
  for (const auto& dir : split(env_or("LMGRID_DATA_PATH", ""), ':')) {
    fs::path p = fs::path(dir) / src->relative_path;
    searched.push_back(p);
    if (present(p)) return found(p);
  }
  fs::path cached = cache_dir() / src->relative_path;
  searched.push_back(cached);
  if (present(cached)) return found(cached);
  if (folder) {
    std::string where;
    for (const auto& p : searched) where += "\n  " + p.string();
    throw MissingInputError(fmt::format(
        "data source '{}' not found; looked in:{}\nPut the folder {} ({}) into a folder of LMGRID_DATA_PATH or at {}",
        src->name, where, src->relative_path, src->doc, cached.string()));
  }
  std::string why = "LMGRID_OFFLINE=1";
  if (!src->url.empty() && env_or("LMGRID_OFFLINE", "") != "1") {
    why = download(src->url, cached, src->sha256);
    if (why.empty()) return cached;
  } else if (src->url.empty()) {
    why = "it has no canonical download address";
  }
  std::string where;
  for (const auto& p : searched) where += "\n  " + p.string();
  throw MissingInputError(
      fmt::format("data source '{}' not found; looked in:{}\nand could not download it ({}).\nPut the file {} ({} "
                  "bytes, sha256 {}) "
                  "at {}, or add a folder holding {} to LMGRID_DATA_PATH.{}",
                  src->name, where, why, src->relative_path, src->size, src->sha256, cached.string(),
                  src->relative_path, src->url.empty() ? "" : "\nCanonical address: " + src->url));
}

}  // namespace lmgrid
