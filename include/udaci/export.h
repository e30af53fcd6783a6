/* UDACI_API marks the functions of the C ABI that libudaci exports. The shared
 * library is built with hidden visibility by default (and with the static
 * core's symbols hidden), so exactly the UDACI_API functions form its dynamic
 * symbol table.
 *
 * UDACI_BUILDING_LIBRARY: defined by the build of libudaci itself.
 * UDACI_STATIC: define when linking a static build of the C API (no import
 * or export decoration is wanted then). */
#ifndef UDACI_EXPORT_H
#define UDACI_EXPORT_H

#if defined(UDACI_STATIC)
#define UDACI_API
#elif defined(_WIN32) || defined(__CYGWIN__)
#if defined(UDACI_BUILDING_LIBRARY)
#define UDACI_API __declspec(dllexport)
#else
#define UDACI_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define UDACI_API __attribute__((visibility("default")))
#else
#define UDACI_API
#endif

#endif /* UDACI_EXPORT_H */
