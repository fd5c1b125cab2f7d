// doctest under MPI: every rank runs the same test cases in the same order (they communicate); rank 0 reports
// in full, the others only their failures. The exit status is the worst over ranks.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <lgm/comm/mpi.hpp>

int main(int argc, char** argv) {
  lgm::MpiSession session(argc, argv);
  doctest::Context context(argc, argv);
  if (session.rank() != 0) context.setOption("minimal", true);
  int status = context.run();
  MPI_Allreduce(MPI_IN_PLACE, &status, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return status;
}
