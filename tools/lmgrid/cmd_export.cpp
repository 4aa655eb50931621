// lmgrid export --run ID --format hf|raw --out DIR [--force] [--reference TEXT] [--db PATH]:
// writes a run's newest checkpoint as config.json + model.safetensors (+ tokenizer files) that
// transformers loads (gpt: GPT2LMHeadModel, llama: LlamaForCausalLM), or the raw tensors with
// lmgrid_config.json (other architectures, or --format raw). The logic is core's export layer.
#include <cstdio>

#include <fmt/format.h>

#include <lmgrid/export/hf_export.hpp>
#include <lmgrid/plugin/registry.hpp>
#include <lmgrid/store/store.hpp>

#include "commands.hpp"

namespace lmgrid::cli {

void add_export(CLI::App& app) {
  auto opt = std::make_shared<ExportOptions>();
  auto db = std::make_shared<std::string>();
  auto reference = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("export", "Write a run's newest checkpoint for Hugging Face transformers");
  cmd->add_option("--run", opt->run_id, "run id")->required();
  cmd->add_option("--format", opt->format, "hf (GPT2LMHeadModel / LlamaForCausalLM, else raw) or raw")
      ->capture_default_str();
  cmd->add_option("--out,-o", opt->out, "folder to write (must be empty or absent unless --force)")->required();
  cmd->add_flag("--force", opt->force, "replace a non-empty --out folder");
  auto* ref = cmd->add_option("--reference", *reference,
                              "also write lmgrid_reference.safetensors: this text's ids and lmgrid's logits on them");
  cmd->add_option("--db", *db, "results database (default $LMGRID_DB or results/lmgrid.db)");
  cmd->callback([opt, db, reference, ref] {
    opt->db = db->empty() ? default_db_path() : std::filesystem::path(*db);
    if (ref->count() > 0) opt->reference_text = *reference;
    ExportResult r = export_run(*opt, Registry::instance());
    std::fprintf(stderr, "lmgrid: run %lld, checkpoint at step %lld, exported as %s\n",
                 static_cast<long long>(opt->run_id), static_cast<long long>(r.step), r.layout.c_str());
    for (const auto& n : r.notes) std::fprintf(stderr, "lmgrid: note: %s\n", n.c_str());
    for (const auto& f : r.files) std::printf("%s\n", (opt->out / f).string().c_str());
  });
}

}  // namespace lmgrid::cli
