// report.h — the forms a campaign's result takes: the text report, JSON, a markdown table.
#pragma once

#include <string>

#include "crashrate/results.h"

namespace tandem::crashrate {

// format_report(result): the table (one line per configuration), the comparisons, the SPRT
// verdict, the largest crash groups with their top frames, and where the logs are with the first
// lines of the first failures. What `tandem crashrate` prints at the end.
[[nodiscard]] std::string format_report(const CampaignResult& result);

// to_json(result): the document of `--json` (docs/crashrate.md lists the fields).
[[nodiscard]] std::string to_json(const CampaignResult& result);

// to_markdown(result): the table of `--markdown`.
[[nodiscard]] std::string to_markdown(const CampaignResult& result);

// format_stack(stack): one line per frame: "#0 function (file:line) in module".
[[nodiscard]] std::string format_stack(const ThreadStack& stack);

}  // namespace tandem::crashrate
