// The editor's page of `udaci serve` (GET /): one self-contained HTML file, no
// external assets. Paste a summary, get headline candidates as they stream in
// (POST /v1/headlines, JSON Lines), each with its latency.
#pragma once

#include <string>

namespace udaci::server {

const std::string& editor_page_html();

}  // namespace udaci::server
