/* qinspect public engine API: umbrella include. */
#ifndef QI_QI_H
#define QI_QI_H

#define QI_VERSION_MAJOR 0
#define QI_VERSION_MINOR 1
#define QI_VERSION_PATCH 0
#define QI_VERSION_STRING "0.1.0"

#include "qi/error.h"
#include "qi/image.h"
#include "qi/meta.h"
#include "qi/check.h"
#include "qi/snapshot.h"
#include "qi/scan.h"

#endif
