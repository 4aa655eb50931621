// Merging results databases: `lmgrid merge OUT.db IN.db...` gathers the shard databases of a
// grid run in pieces (`lmgrid run --shard I/N`, a Slurm array) into one database.
//
// Idempotent by config hash: a run present in OUT and IN is kept once, as its better copy:
// status done first, then the newest finished_at, then the furthest step; on a tie OUT's copy
// stays. The copy taken brings all of its rows (params, metrics, summaries, plugins,
// checkpoints) and replaces every row of the other, so no row is ever duplicated, and merging
// the same inputs again changes nothing. Run ids are OUT's own: a new run gets the next id, a
// replaced run keeps its id.
//
// Run files: OUT's runs live in <OUT's folder>/runs/<hash16>/ like any database's. When IN lies in
// another folder, the files of each run taken from it (checkpoints, tokenizer.txt) are hard-linked
// there (copied when a link is impossible, e.g. across file systems) and its checkpoint paths
// rewritten to match, so the merged database is self-contained. Inputs in OUT's own folder share
// its runs/ folder: nothing is linked. A checkpoint file outside its run's folder is kept where
// it is (its path stored relative to OUT's folder when inside it, else absolute).
#pragma once

#include <cstdint>
#include <filesystem>

#include "lmgrid/store/store.hpp"

namespace lmgrid {

struct MergeStats {
  int64_t runs = 0;      // runs in the input
  int64_t added = 0;     // not in OUT before
  int64_t replaced = 0;  // OUT had a worse copy
  int64_t kept = 0;      // OUT's copy was as good or better: nothing changed
  int64_t metric_rows = 0;
  int64_t files = 0;  // run files linked or copied
};

// Checks that `in` is an lmgrid database this lmgrid can read (UserError naming it otherwise)
// and that it is not the database file `out` (UserError). Writes nothing.
void check_merge_input(const std::filesystem::path& out, const std::filesystem::path& in);
// Merges `in` into `out` in one transaction (ATTACH). Calls check_merge_input first.
MergeStats merge_database(Store& out, const std::filesystem::path& in);

}  // namespace lmgrid
