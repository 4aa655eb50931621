// bench_report DB [N_RUNS] [N_POINTS]: builds a synthetic results database through the real Store
// API for the report benchmark (tools/bench/bench_report.sh): N_RUNS runs (default 1000) over
// 4 architectures x 5 learning rates x 17 depths x 3 seeds, each with N_POINTS train/loss points
// (default 1000) and N_POINTS/10 val/loss points, summaries, and 1% failed runs.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <lmgrid/store/store.hpp>
#include <lmgrid/base/util.hpp>

using namespace lmgrid;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_report DB [N_RUNS] [N_POINTS]\n");
    return 2;
  }
  std::filesystem::path path = argv[1];
  int n_runs = argc > 2 ? std::atoi(argv[2]) : 1000, n_points = argc > 3 ? std::atoi(argv[3]) : 1000;
  std::filesystem::remove(path);
  double t0 = monotonic_seconds();
  Store store(path);
  const char* archs[] = {"gpt", "mamba2", "gem", "ttt"};
  Experiment exp;
  exp.name = "bench";
  exp.file = "bench.toml";
  for (int i = 0; i < n_runs; ++i) {
    int g = i / 3;
    RunConfig rc;
    rc.experiment = exp.name;
    rc.seed = i % 3 + 1;
    rc.values["model.plugin"] = std::string(archs[g % 4]);
    rc.values["optim.lr"] = std::pow(10.0, -4 + 0.5 * ((g / 4) % 5));
    rc.values["model.n_layer"] = int64_t{g / 20 + 1};
    rc.values["optim.plugin"] = std::string("adamw");
    rc.values["data.plugin"] = std::string("text");
    rc.values["tokenizer.plugin"] = std::string("char");
    for (int k = 0; k < 25; ++k) rc.values["train.key" + std::to_string(k)] = int64_t{k};  // realistic width
    exp.runs.push_back(rc);
  }
  auto ids = store.register_runs(exp, false);
  std::srand(1);
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t id = ids[i];
    double lr = std::get<double>(exp.runs[i].values.at("optim.lr"));
    double floor = 1.5 + 0.1 * std::pow(std::log10(lr) + 2.5, 2) + 0.01 * (i % 7);
    std::vector<MetricRow> rows;
    double best = 1e9, last = 0;
    for (int s = 1; s <= n_points; ++s) {
      double base = floor + 2.5 * std::exp(-s * 6.0 / n_points);
      double t = s * 0.05;
      rows.push_back({id, s, int64_t{s} * 768, t, "train/loss", base + 0.05 * (std::rand() / double(RAND_MAX) - 0.5)});
      if (s % 10 == 0) {
        double v = base + 0.02 * (std::rand() / double(RAND_MAX) - 0.5);
        rows.push_back({id, s, int64_t{s} * 768, t, "val/loss", v});
        best = std::min(best, v), last = v;
      }
    }
    store.mark_started(id, 100000 + 1000 * static_cast<int64_t>(i % 17), "cpu");
    store.write_metrics(rows);
    sql::Transaction tx(store.db());
    if (i % 100 == 99) {
      store.set_step(id, n_points / 2);
      store.set_status(id, RunStatus::failed, "plugin arch/x: synthetic failure");
    } else {
      for (auto [k, v] : {std::pair<const char*, double>{"best_val_loss", best},
                          {"final_val_loss", last},
                          {"tokens_per_s", 40000.0},
                          {"wall_time_s", n_points * 0.05},
                          {"mfu", 0.2},
                          {"tokens", n_points * 768.0}})
        store.set_summary(id, k, v);
      store.set_step(id, n_points);
      store.set_status(id, RunStatus::done);
    }
    tx.commit();
  }
  std::printf("built %s: %d runs x %d train + %d val points in %.1f s\n", path.c_str(), n_runs, n_points, n_points / 10,
              monotonic_seconds() - t0);
  return 0;
}
