// The plugin SDK's entry point: the plugin contract (plugin/plugin.hpp), typed parameters and
// errors. Out-of-tree plugins include this (and lmgrid/nn.hpp for the nn blocks); lmgrid's own
// code includes the layer headers directly.
#pragma once

#include "lmgrid/base/errors.hpp"
#include "lmgrid/base/params.hpp"
#include "lmgrid/plugin/plugin.hpp"
