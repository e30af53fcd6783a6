# Test: install udaci into a fresh prefix, configure and build the downstream
# project of tests/c_api/downstream against it with find_package(udaci), and
# run its programs. Run as a CTest script:
#   cmake -DUDACI_BUILD_DIR=... -DWORK_DIR=... -DSOURCE_DIR=... -P downstream_test.cmake
foreach(var UDACI_BUILD_DIR WORK_DIR SOURCE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "downstream_test.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message(STATUS "$ ${ARGN}\n${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${UDACI_BUILD_DIR} --prefix ${prefix} --component udaci)
foreach(f include/udaci/udaci.h include/udaci/udaci.hpp include/udaci/export.h include/udaci/version.h)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DCMAKE_BUILD_TYPE=Release
    -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/downstream_c)
run(${WORK_DIR}/build/downstream_cpp)
