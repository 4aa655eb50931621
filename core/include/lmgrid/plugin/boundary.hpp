// The plugin boundary: every call into plugin code goes through call_plugin(), which records
// which plugin is running (readable from a signal handler, for crash reports) and turns any
// exception into a PluginError naming the plugin. UserErrors (exit 2), MissingInputErrors and
// MachineErrors (a run they stop is interrupted, not failed) keep their type.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include <c10/util/Exception.h>

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/machine_error.hpp"

namespace lmgrid {

// Plugin id ("arch/gpt") being called right now, "" outside plugin code. Async-signal-safe read.
const char* current_plugin();
void set_current_plugin(const std::string& id);

template <class F>
auto call_plugin(const std::string& id, F&& f) -> decltype(f()) {
  struct Scope {
    std::string prev;
    explicit Scope(const std::string& id) : prev(current_plugin()) { set_current_plugin(id); }
    ~Scope() { set_current_plugin(prev); }
  } scope(id);
  try {
    return f();
  } catch (const MissingInputError& e) {  // the kinds that decide a run's status keep their type
    throw MissingInputError("plugin " + id + ": " + e.what());
  } catch (const UserError& e) {
    throw UserError("plugin " + id + ": " + e.what());
  } catch (const MachineError& e) {
    throw MachineError("plugin " + id + ": " + e.what());
  } catch (const PluginError&) {
    throw;
  } catch (const c10::Error& e) {
    throw PluginError(id, e.what_without_backtrace());
  } catch (const std::exception& e) {
    throw PluginError(id, e.what());
  }
}

}  // namespace lmgrid
