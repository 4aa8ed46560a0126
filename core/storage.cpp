#include "core/storage.h"

namespace nextvit {

Storage::Storage(size_t bytes, Device device)
    : bytes_(bytes), device_(device), allocator_(allocator_for(device)) {
  data_ = allocator_->allocate(bytes);
}

Storage::~Storage() {
  if (data_ != nullptr) allocator_->deallocate(data_, bytes_);
}

}  // namespace nextvit
