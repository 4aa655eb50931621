// Scoring answers in evaluation batches: exact match by answer and sums by slice, what the
// trainer records as val/accuracy, val/accuracy/<key>=<value> and val/loss/<key>=<value>.
//
// A row's answers are its scored positions (loss_mask > 0) grouped by Batch::answer_ids (equal
// ids >= 0 form one answer; each scored position alone when answer_ids is undefined). An answer
// is correct when the model's argmax is right at every one of its positions: for an answer whose
// last scored token is its terminator, that is exactly greedy decoding's exact match, since
// greedy decoding reproduces the teacher-forced inputs as long as every argmax is right. A
// row's tags (Batch::tags, "key=value" words) add its answers and scored losses to each slice.
#pragma once

#include <map>
#include <string>

#include "lmgrid/plugin/plugin.hpp"

namespace lmgrid {

// Sums over scored answers: the whole split's, or one slice's.
struct AnswerSums {
  double loss = 0, weight = 0;      // loss summed over scored positions, and their count
  double correct = 0, answers = 0;  // answers right at every position (exact match), answers
  void add(const AnswerSums& o) { loss += o.loss, weight += o.weight, correct += o.correct, answers += o.answers; }
};

// Adds batch `b`'s answers to `total` and its tagged rows to `slices`. hit: bool (B, T), argmax
// == target; position_loss: (B, T) cross entropy at every position (only scored ones are read).
// b.loss_mask must be defined.
void add_answers(const Batch& b, const torch::Tensor& hit, const torch::Tensor& position_loss, AnswerSums& total,
                 std::map<std::string, AnswerSums>& slices);

}  // namespace lmgrid
