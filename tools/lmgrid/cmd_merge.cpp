// lmgrid merge OUT.db IN.db...: the shard databases of a grid (`lmgrid run --shard I/N`, `lmgrid
// slurm`) into one, idempotent by config hash (the logic is in core: lmgrid/store/merge.hpp).
// Every input is checked before OUT is created or written; then one transaction per input.
#include <cstdio>

#include <fmt/format.h>

#include <lmgrid/base/errors.hpp>
#include <lmgrid/base/util.hpp>
#include <lmgrid/store/merge.hpp>
#include <lmgrid/store/store.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_merge(CLI::App& app) {
  struct Opt {
    std::string out;
    std::vector<std::string> inputs;
  };
  auto opt = std::make_shared<Opt>();
  auto* cmd =
      app.add_subcommand("merge", "Merge results databases (e.g. a grid's shards) into OUT, idempotent by config hash");
  cmd->add_option("out", opt->out, "database written (created if missing)")->required();
  cmd->add_option("inputs", opt->inputs, "databases read (never written)")->required();
  cmd->callback([opt] {
    for (const auto& in : opt->inputs) check_merge_input(opt->out, in);
    Store out(opt->out);
    double t0 = monotonic_seconds();
    for (const auto& in : opt->inputs) {
      MergeStats s = merge_database(out, in);
      std::printf("%s: %lld runs: %lld added, %lld replaced, %lld kept (%lld metric rows, %lld run files)\n",
                  in.c_str(), static_cast<long long>(s.runs), static_cast<long long>(s.added),
                  static_cast<long long>(s.replaced), static_cast<long long>(s.kept),
                  static_cast<long long>(s.metric_rows), static_cast<long long>(s.files));
    }
    auto st = out.db().prepare("SELECT count(*), COALESCE(SUM(status = 'done'), 0) FROM runs");
    st.step();
    std::printf("%s: %lld runs (%lld done), merged in %.3f s\n", out.path().c_str(), static_cast<long long>(st.i64(0)),
                static_cast<long long>(st.i64(1)), monotonic_seconds() - t0);
  });
}

}  // namespace lmgrid::cli
