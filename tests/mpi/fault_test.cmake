# A 2-rank `nextvit train` in which rank 1 fails on purpose (NEXTVIT_FAULT=FAULT, see
# train/distributed/data_parallel.h): the job must end, with a non-zero status and a message
# matching EXPECT, in under 60 seconds. Run by CTest as
#   cmake -DMPIEXEC=... -DNEXTVIT=... -DFAULT=kill:1:2 -DEXPECT=regex -DOUT=dir -P fault_test.cmake
string(TIMESTAMP start "%s")
file(REMOVE_RECURSE ${OUT})
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env NEXTVIT_FAULT=${FAULT} NEXTVIT_DIST_TIMEOUT=10
          ${MPIEXEC} --oversubscribe --allow-run-as-root -np 2
          ${NEXTVIT} train --batch 8 --epochs 1 --limit-train 160 --limit-eval 16 --workers 0
                           --threads 1 --log-every 0 --out ${OUT}
  RESULT_VARIABLE rc
  OUTPUT_VARIABLE out
  ERROR_VARIABLE out
  TIMEOUT 60)
string(TIMESTAMP end "%s")
math(EXPR seconds "${end} - ${start}")
file(REMOVE_RECURSE ${OUT})
message("--- output of the job ---\n${out}\n--- exit: ${rc}, ${seconds} s ---")
if(out MATCHES "fashion-mnist: .* not found")
  message("SKIPPED: Fashion-MNIST not installed")
  cmake_language(EXIT 77)
endif()
if(rc MATCHES "timeout")
  message(FATAL_ERROR "the job did not end within 60 s after the fault ${FAULT}")
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "the job exited with status 0 despite the fault ${FAULT}")
endif()
if(NOT out MATCHES "${EXPECT}")
  message(FATAL_ERROR "no message matching '${EXPECT}' in the job's output")
endif()
message("the fault ${FAULT} ended the job in ${seconds} s with a message")
