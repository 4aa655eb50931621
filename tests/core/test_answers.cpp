// Answer scoring (lmgrid/train/answers.hpp) on hand-made batches whose right numbers are worked
// out below: exact match over multi-token answers, token answers without answer_ids, unscored
// positions ignored, sums by slice tag.
#include <catch2/catch.hpp>

#include <lmgrid/train/answers.hpp>

using namespace lmgrid;

TEST_CASE("answers: exact match by answer id, losses and slices", "[unit][answers]") {
  // Row 0: answer 0 at t=1,2 (both right), answer 1 at t=4 (wrong); t=3 right but unscored.
  // Row 1: answer 0 at t=0,1,2 (t=1 wrong -> the answer is wrong); t=4 scored, id -1 (a scored
  // position outside every answer: its loss counts, no answer).
  Batch b;
  b.loss_mask = torch::tensor({0, 1, 1, 0, 1, 1, 1, 1, 0, 1}, torch::kFloat32).view({2, 5});
  b.answer_ids = torch::tensor({-1, 0, 0, -1, 1, 0, 0, 0, -1, -1}, torch::kLong).view({2, 5});
  b.tags = {"task=qa1 length=0", "task=qa2 length=0"};
  auto hit = torch::tensor({0, 1, 1, 1, 0, 1, 0, 1, 1, 1}, torch::kBool).view({2, 5});
  auto loss = torch::tensor({9., 1., 2., 9., 3., 4., 5., 6., 9., 7.}, torch::kFloat64).view({2, 5});
  AnswerSums total;
  std::map<std::string, AnswerSums> slices;
  add_answers(b, hit, loss, total, slices);
  CHECK(total.answers == 3);
  CHECK(total.correct == 1);
  CHECK(total.weight == 7);                        // scored positions
  CHECK(total.loss == 1 + 2 + 3 + 4 + 5 + 6 + 7);  // unscored 9s left out
  REQUIRE(slices.size() == 3);
  CHECK(slices["task=qa1"].answers == 2);
  CHECK(slices["task=qa1"].correct == 1);
  CHECK(slices["task=qa1"].loss == 6);
  CHECK(slices["task=qa1"].weight == 3);
  CHECK(slices["task=qa2"].answers == 1);
  CHECK(slices["task=qa2"].correct == 0);
  CHECK(slices["task=qa2"].loss == 22);
  CHECK(slices["length=0"].answers == 3);
  CHECK(slices["length=0"].correct == 1);

  // Without answer_ids every scored position is an answer of its own (token accuracy); rows
  // without a tag add to the total only.
  b.answer_ids = torch::Tensor();
  b.tags = {"task=qa1"};
  AnswerSums tokens;
  std::map<std::string, AnswerSums> by_tag;
  add_answers(b, hit, loss, tokens, by_tag);
  CHECK(tokens.answers == 7);
  CHECK(tokens.correct == 5);  // t=(0,1),(0,2),(1,0),(1,2),(1,4)
  CHECK(by_tag.size() == 1);
  CHECK(by_tag["task=qa1"].answers == 3);
  CHECK(by_tag["task=qa1"].correct == 2);
}
