#include "lmgrid/train/answers.hpp"

#include <sstream>

namespace lmgrid {

void add_answers(const Batch& b, const torch::Tensor& hit, const torch::Tensor& position_loss, AnswerSums& total,
                 std::map<std::string, AnswerSums>& slices) {
  const int64_t B = hit.size(0), T = hit.size(1);
  auto hit_c = hit.to(torch::kCPU).to(torch::kBool).contiguous();
  auto mask_c = b.loss_mask.to(torch::kCPU).to(torch::kFloat32).contiguous();
  auto loss_c = position_loss.to(torch::kCPU).to(torch::kFloat64).contiguous();
  torch::Tensor ids_c =
      b.answer_ids.defined() ? b.answer_ids.to(torch::kCPU).to(torch::kLong).contiguous() : torch::Tensor();
  auto hits = hit_c.accessor<bool, 2>();
  auto mask = mask_c.accessor<float, 2>();
  auto loss = loss_c.accessor<double, 2>();
  for (int64_t r = 0; r < B; ++r) {
    AnswerSums row;
    std::map<int64_t, bool> grouped;  // answer id -> right at every position so far
    for (int64_t t = 0; t < T; ++t) {
      if (mask[r][t] <= 0) continue;
      row.loss += loss[r][t];
      row.weight += 1;
      if (!ids_c.defined()) {
        row.answers += 1;
        row.correct += hits[r][t] ? 1 : 0;
        continue;
      }
      int64_t id = ids_c.accessor<int64_t, 2>()[r][t];
      if (id < 0) continue;
      auto it = grouped.emplace(id, true).first;
      it->second = it->second && hits[r][t];
    }
    for (const auto& [id, right] : grouped) row.answers += 1, row.correct += right ? 1 : 0;
    total.add(row);
    if (static_cast<size_t>(r) >= b.tags.size()) continue;
    std::istringstream words(b.tags[static_cast<size_t>(r)]);
    for (std::string tag; words >> tag;) slices[tag].add(row);
  }
}

}  // namespace lmgrid
