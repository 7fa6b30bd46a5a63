// unwind.cpp — see unwind.h.
#include "unwind.h"

#include <cxxabi.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>

#ifdef CRASHRATE_HAVE_LIBDW
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#endif

namespace tandem::crashrate::detail {

#ifdef CRASHRATE_HAVE_LIBDW
namespace {

constexpr int kMaxFrames = 64;

std::string demangle(const char* name) {
  if (name == nullptr) return {};
  int status = 0;
  std::unique_ptr<char, decltype(&std::free)> out(
      abi::__cxa_demangle(name, nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

struct FrameCollector {
  std::vector<std::pair<Dwarf_Addr, bool>> pcs;  // pc, is_activation
};

int collect_frame(Dwfl_Frame* frame, void* arg) {
  auto* c = static_cast<FrameCollector*>(arg);
  Dwarf_Addr pc = 0;
  bool activation = false;
  if (!dwfl_frame_pc(frame, &pc, &activation)) return DWARF_CB_ABORT;
  c->pcs.emplace_back(pc, activation);
  return c->pcs.size() >= kMaxFrames ? DWARF_CB_ABORT : DWARF_CB_OK;
}

// locate(dwfl, pc): the module of pc and pc's offset in it (no symbols: see Symbolizer).
Frame locate(Dwfl* dwfl, Dwarf_Addr pc, bool activation) {
  Frame f;
  f.pc = pc;
  // A return address points past the call; look up the call itself.
  Dwfl_Module* mod = dwfl_addrmodule(dwfl, activation ? pc : pc - 1);
  if (mod == nullptr) return f;
  Dwarf_Addr start = 0;
  const char* mainfile = nullptr;
  const char* modname = dwfl_module_info(mod, nullptr, &start, nullptr, nullptr, nullptr, &mainfile, nullptr);
  f.module = mainfile != nullptr ? mainfile : (modname != nullptr ? modname : "");
  f.module_offset = pc - start;
  return f;
}

// source_by_cu_scan(mod, addr, file, line): file:line of addr by walking the compile units.
// libdw 0.188 finds a CU by .debug_aranges, which clang does not emit unless -gdwarf-aranges;
// without this, programs built by clang (the asan/tsan presets) get no file:line.
void source_by_cu_scan(Dwfl_Module* mod, Dwarf_Addr addr, std::string& file, int& line) {
  Dwarf_Addr bias = 0;
  Dwarf* dw = dwfl_module_getdwarf(mod, &bias);
  if (dw == nullptr) return;
  const Dwarf_Addr rel = addr - bias;
  Dwarf_Off offset = 0, next = 0;
  std::size_t header_size = 0;
  while (dwarf_nextcu(dw, offset, &next, &header_size, nullptr, nullptr, nullptr) == 0) {
    Dwarf_Die cu;
    if (dwarf_offdie(dw, offset + header_size, &cu) != nullptr && dwarf_haspc(&cu, rel) > 0) {
      if (Dwarf_Line* l = dwarf_getsrc_die(&cu, rel)) {
        const char* src = dwarf_linesrc(l, nullptr, nullptr);
        int lineno = 0;
        if (src != nullptr && dwarf_lineno(l, &lineno) == 0) {
          file = src;
          line = lineno;
        }
      }
      return;
    }
    offset = next;
  }
}

const Dwfl_Callbacks* callbacks() {
  static char* debuginfo_path = nullptr;
  static const Dwfl_Callbacks cb = {dwfl_linux_proc_find_elf, dwfl_standard_find_debuginfo,
                                    nullptr, &debuginfo_path};
  return &cb;
}

const Dwfl_Callbacks* offline_callbacks() {
  static char* debuginfo_path = nullptr;
  static const Dwfl_Callbacks cb = {dwfl_build_id_find_elf, dwfl_standard_find_debuginfo,
                                    dwfl_offline_section_address, &debuginfo_path};
  return &cb;
}

}  // namespace

std::string unwinder_support() { return {}; }

struct Symbolizer::Impl {
  Dwfl* dwfl = dwfl_begin(offline_callbacks());
  std::map<std::string, Dwfl_Module*> modules;  // by path; nullptr: could not be opened
  struct Info {
    std::string function, file;
    std::uint64_t offset = 0;
    int line = 0;
  };
  std::map<std::pair<std::string, std::uint64_t>, Info> cache;  // by (module, lookup offset)

  Dwfl_Module* module(const std::string& path) {
    auto it = modules.find(path);
    if (it != modules.end()) return it->second;
    Dwfl_Module* m = nullptr;
    if (dwfl != nullptr) {
      dwfl_report_begin_add(dwfl);
      m = dwfl_report_offline(dwfl, path.c_str(), path.c_str(), -1);
      dwfl_report_end(dwfl, nullptr, nullptr);
    }
    modules.emplace(path, m);
    return m;
  }
};

Symbolizer::Symbolizer() : impl_(new Impl) {}
Symbolizer::~Symbolizer() {
  if (impl_->dwfl != nullptr) dwfl_end(impl_->dwfl);
  delete impl_;
}

void Symbolizer::fill(Frame& f, bool activation) {
  if (f.module.empty() || f.module[0] != '/') return;
  const std::uint64_t lookup_offset = activation ? f.module_offset : f.module_offset - 1;
  auto key = std::make_pair(f.module, lookup_offset);
  auto it = impl_->cache.find(key);
  if (it == impl_->cache.end()) {
    Impl::Info info;
    if (Dwfl_Module* mod = impl_->module(f.module)) {
      Dwarf_Addr start = 0;
      dwfl_module_info(mod, nullptr, &start, nullptr, nullptr, nullptr, nullptr, nullptr);
      const Dwarf_Addr addr = start + lookup_offset;
      GElf_Off offset = 0;
      GElf_Sym sym;
      if (const char* name = dwfl_module_addrinfo(mod, addr, &offset, &sym, nullptr, nullptr, nullptr)) {
        info.function = demangle(name);
        info.offset = offset;
      }
      if (Dwfl_Line* line = dwfl_module_getsrc(mod, addr)) {
        int lineno = 0;
        if (const char* file = dwfl_lineinfo(line, nullptr, &lineno, nullptr, nullptr, nullptr)) {
          info.file = file;
          info.line = lineno;
        }
      } else {
        source_by_cu_scan(mod, addr, info.file, info.line);
      }
    }
    it = impl_->cache.emplace(std::move(key), std::move(info)).first;
  }
  f.function = it->second.function;
  f.offset = it->second.offset + (activation || f.function.empty() ? 0 : 1);
  f.file = it->second.file;
  f.line = it->second.line;
}

std::vector<ThreadStack> unwind_threads(pid_t pid, const std::vector<pid_t>& tids, Symbolizer& symbolizer) {
  std::vector<ThreadStack> out;
  std::unique_ptr<Dwfl, decltype(&dwfl_end)> dwfl(dwfl_begin(callbacks()), &dwfl_end);
  std::string failure;
  if (!dwfl) {
    failure = std::string("dwfl_begin: ") + dwfl_errmsg(-1);
  } else if (dwfl_linux_proc_report(dwfl.get(), pid) != 0) {
    failure = std::string("dwfl_linux_proc_report: ") + dwfl_errmsg(-1);
  } else if (dwfl_report_end(dwfl.get(), nullptr, nullptr) != 0) {
    failure = std::string("dwfl_report_end: ") + dwfl_errmsg(-1);
  } else if (const int e = dwfl_linux_proc_attach(dwfl.get(), pid, true); e != 0) {
    failure = std::string("dwfl_linux_proc_attach: ") + (e > 0 ? std::strerror(e) : dwfl_errmsg(-1));
  }
  for (pid_t tid : tids) {
    ThreadStack s;
    s.tid = tid;
    if (!failure.empty()) {
      s.note = "stack unavailable: " + failure;
      out.push_back(std::move(s));
      continue;
    }
    FrameCollector c;
    const int r = dwfl_getthread_frames(dwfl.get(), tid, collect_frame, &c);
    for (const auto& [pc, activation] : c.pcs) {
      s.frames.push_back(locate(dwfl.get(), pc, activation));
      symbolizer.fill(s.frames.back(), activation);
    }
    if (c.pcs.size() >= static_cast<std::size_t>(kMaxFrames)) {
      s.note = "cut at " + std::to_string(kMaxFrames) + " frames";
    } else if (r != 0 && c.pcs.empty()) {
      s.note = std::string("stack unavailable: dwfl_getthread_frames: ") + dwfl_errmsg(-1);
    }
    out.push_back(std::move(s));
  }
  return out;
}

#else  // !CRASHRATE_HAVE_LIBDW

std::string unwinder_support() {
  return "stack unavailable: tandem was built without libdw (install libdw-dev and rebuild)";
}

struct Symbolizer::Impl {};
Symbolizer::Symbolizer() : impl_(nullptr) {}
Symbolizer::~Symbolizer() = default;
void Symbolizer::fill(Frame&, bool) {}

std::vector<ThreadStack> unwind_threads(pid_t, const std::vector<pid_t>& tids, Symbolizer&) {
  std::vector<ThreadStack> out;
  for (pid_t tid : tids) out.push_back({tid, {}, unwinder_support()});
  return out;
}

#endif

}  // namespace tandem::crashrate::detail
