#include "tandem/serve/metrics.h"

#include <cstdio>
#include <string>

namespace tandem::serve {

namespace {

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// labels(base, extra): `{base,extra}` with either part possibly empty; "" when both are.
std::string labels(std::string_view base, std::string_view extra) {
  if (base.empty() && extra.empty()) return "";
  std::string s = "{";
  s += base;
  if (!base.empty() && !extra.empty()) s += ",";
  s += extra;
  return s + "}";
}

}  // namespace

std::string BatchQueueMetrics::to_prometheus(std::string_view prefix,
                                             std::string_view extra) const {
  const std::string p(prefix);
  std::string out;
  auto family = [&](const std::string& name, const char* type, const char* help) {
    out += "# HELP " + p + name + " " + help + "\n# TYPE " + p + name + " " + type + "\n";
  };
  auto sample = [&](const std::string& name, std::string_view lbl, double v) {
    out += p + name + labels(lbl, extra) + " " + number(v) + "\n";
  };

  family("_requests_total", "counter", "Requests by outcome (submitted counts every submit).");
  const std::pair<const char*, std::uint64_t> outcomes[] = {
      {"submitted", submitted}, {"completed", completed}, {"rejected", rejected},
      {"timed_out", timed_out}, {"failed", failed},       {"cancelled", cancelled}};
  for (const auto& [name, v] : outcomes) {
    sample("_requests_total", std::string("outcome=\"") + name + "\"", static_cast<double>(v));
  }
  family("_queued_requests", "gauge", "Requests waiting in the queue now.");
  sample("_queued_requests", "", static_cast<double>(queued));
  family("_batches_total", "counter", "Batches run (successful or failed).");
  sample("_batches_total", "", static_cast<double>(batches));
  family("_batch_rows_total", "counter", "Rows (samples) run in batches.");
  sample("_batch_rows_total", "", static_cast<double>(batch_rows));
  family("_batch_size_average", "gauge", "Rows per batch since the queue started.");
  sample("_batch_size_average", "", avg_batch_size());

  auto summary = [&](const std::string& name, const char* help, const LatencySummary& s) {
    family(name, "summary", help);
    sample(name, "quantile=\"0.5\"", s.p50_ms / 1e3);
    sample(name, "quantile=\"0.9\"", s.p90_ms / 1e3);
    sample(name, "quantile=\"0.99\"", s.p99_ms / 1e3);
    sample(name + "_sum", "", s.sum_ms / 1e3);
    sample(name + "_count", "", static_cast<double>(s.count));
  };
  summary("_queue_time_seconds", "Per request: submit until its batch starts.", queue_time);
  summary("_compute_time_seconds", "Per batch: merge, forward, slice, synchronize.",
          compute_time);
  summary("_take_time_seconds",
          "Per batch: its executor taking it (lock, intake, waiting for work or the delay).",
          take_time);
  summary("_complete_time_seconds", "Per batch: completing its requests after the forward.",
          complete_time);
  return out;
}

}  // namespace tandem::serve
