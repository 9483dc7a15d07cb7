// Built into every executable of a ThreadSanitizer build (RAPPORT_TSAN) only.
//
// librdkafka starts its threads with C11 thrd_create and locks with mtx_lock
// and cnd_wait. glibc implements those by calling its pthread functions
// internally, past ThreadSanitizer's interceptors, so (with clang 14) a
// librdkafka thread runs without ThreadSanitizer's state and crashes in its
// first allocation, and librdkafka's locking is invisible to the race
// detector. These definitions take precedence over glibc's for every
// library of the process and route each call through the public pthread
// functions, which ThreadSanitizer intercepts. (glibc's own thrd_* and mtx_*
// are thin wrappers over the same calls; the types share their layout.)
#include <errno.h>
#include <pthread.h>
#include <threads.h>

#include <cstdint>

namespace {

struct Start {
  thrd_start_t function;
  void* argument;
};

void* RunC11Thread(void* opaque) {
  Start start = *static_cast<Start*>(opaque);
  delete static_cast<Start*>(opaque);
  // As glibc does: the int result travels as a pointer to thrd_join.
  return reinterpret_cast<void*>(static_cast<intptr_t>(start.function(start.argument)));
}

int C11Result(int error) {
  switch (error) {
    case 0:
      return thrd_success;
    case ENOMEM:
      return thrd_nomem;
    case EBUSY:
      return thrd_busy;
    case ETIMEDOUT:
      return thrd_timedout;
    default:
      return thrd_error;
  }
}

}  // namespace

extern "C" {

int thrd_create(thrd_t* thread, thrd_start_t function, void* argument) {
  auto* start = new Start{function, argument};
  int error = pthread_create(thread, nullptr, RunC11Thread, start);
  if (error != 0) delete start;
  return C11Result(error);
}

int thrd_join(thrd_t thread, int* result) {
  void* value = nullptr;
  int error = pthread_join(thread, &value);
  if (error == 0 && result != nullptr) *result = static_cast<int>(reinterpret_cast<intptr_t>(value));
  return C11Result(error);
}

int thrd_detach(thrd_t thread) { return C11Result(pthread_detach(thread)); }

int mtx_init(mtx_t* mutex, int type) {
  pthread_mutexattr_t attributes;
  pthread_mutexattr_init(&attributes);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attributes, PTHREAD_MUTEX_RECURSIVE);
  int error = pthread_mutex_init(reinterpret_cast<pthread_mutex_t*>(mutex), &attributes);
  pthread_mutexattr_destroy(&attributes);
  return C11Result(error);
}

int mtx_lock(mtx_t* mutex) { return C11Result(pthread_mutex_lock(reinterpret_cast<pthread_mutex_t*>(mutex))); }

int mtx_trylock(mtx_t* mutex) { return C11Result(pthread_mutex_trylock(reinterpret_cast<pthread_mutex_t*>(mutex))); }

int mtx_timedlock(mtx_t* __restrict mutex, const struct timespec* __restrict until) {
  return C11Result(pthread_mutex_timedlock(reinterpret_cast<pthread_mutex_t*>(mutex), until));
}

int mtx_unlock(mtx_t* mutex) { return C11Result(pthread_mutex_unlock(reinterpret_cast<pthread_mutex_t*>(mutex))); }

void mtx_destroy(mtx_t* mutex) { pthread_mutex_destroy(reinterpret_cast<pthread_mutex_t*>(mutex)); }

int cnd_init(cnd_t* condition) {
  return C11Result(pthread_cond_init(reinterpret_cast<pthread_cond_t*>(condition), nullptr));
}

int cnd_signal(cnd_t* condition) {
  return C11Result(pthread_cond_signal(reinterpret_cast<pthread_cond_t*>(condition)));
}

int cnd_broadcast(cnd_t* condition) {
  return C11Result(pthread_cond_broadcast(reinterpret_cast<pthread_cond_t*>(condition)));
}

int cnd_wait(cnd_t* condition, mtx_t* mutex) {
  return C11Result(
      pthread_cond_wait(reinterpret_cast<pthread_cond_t*>(condition), reinterpret_cast<pthread_mutex_t*>(mutex)));
}

int cnd_timedwait(cnd_t* __restrict condition, mtx_t* __restrict mutex, const struct timespec* __restrict until) {
  return C11Result(pthread_cond_timedwait(reinterpret_cast<pthread_cond_t*>(condition),
                                          reinterpret_cast<pthread_mutex_t*>(mutex), until));
}

void cnd_destroy(cnd_t* condition) { pthread_cond_destroy(reinterpret_cast<pthread_cond_t*>(condition)); }

}  // extern "C"
