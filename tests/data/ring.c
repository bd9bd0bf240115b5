/* ring + allreduce across all ranks; each rank reports where it runs and its groups */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>
#include <sys/time.h>

static void groups(char *out, size_t n)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[4096];
    out[0] = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "Groups:", 7) == 0) {
            char *p = line + 7, *tok;
            while ((tok = strtok(p, " \t\n"))) {
                p = NULL;
                if (out[0]) strncat(out, ",", n - strlen(out) - 1);
                strncat(out, tok, n - strlen(out) - 1);
            }
        }
    if (f) fclose(f);
}

int main(int argc, char **argv)
{
    int rank, size, token, sum, next, prev;
    char host[256], grp[4096];
    double burn = argc > 1 ? atof(argv[1]) : 0;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    gethostname(host, sizeof host);
    groups(grp, sizeof grp);
    next = (rank + 1) % size;
    prev = (rank + size - 1) % size;
    /* the ring: rank 0 sends 0, everyone adds its rank */
    if (rank == 0) {
        token = 0;
        MPI_Send(&token, 1, MPI_INT, next, 0, MPI_COMM_WORLD);
        MPI_Recv(&token, 1, MPI_INT, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else {
        MPI_Recv(&token, 1, MPI_INT, prev, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
        token += rank;
        MPI_Send(&token, 1, MPI_INT, next, 0, MPI_COMM_WORLD);
    }
    MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    {
        struct timeval now;
        gettimeofday(&now, NULL);   /* when this rank had communicated: the bench's "first output" */
        printf("RANK %d/%d host=%s pid=%d groups=%s allreduce=%d t=%ld.%06ld\n", rank, size, host, (int)getpid(),
               grp, sum, (long)now.tv_sec, (long)now.tv_usec);
    }
    if (rank == 0)
        printf("RING %d\n", token);
    fflush(stdout);
    if (burn < 0) {           /* hold: spin until killed (the qdel test) */
        MPI_Barrier(MPI_COMM_WORLD);
        for (;;) sleep(1);
    }
    {   /* burn CPU for the accounting test */
        struct timespec a, b;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
        do clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
        while ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9 < burn);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    return 0;
}
